"""Human- and machine-readable descriptions of the registered components."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from medrecon.plugin import Component, FailedPlugin


def component_record(comp: Component, *, parameters: bool = False) -> dict[str, Any]:
    record: dict[str, Any] = {
        "kind": comp.kind,
        "name": comp.name,
        "summary": comp.spec.summary,
        "plugin": comp.provider.plugin,
        "distribution": comp.provider.distribution,
        "version": comp.provider.version,
        "builtin": comp.provider.builtin,
    }
    requires = getattr(comp.spec.factory, "requires", None)
    if comp.kind == "sampler" and requires is not None:
        record["requires"] = [r.name for r in requires]
    if parameters:
        record["parameters"] = [p.describe() for p in comp.spec.parameters]
    return record


def components_table(components: list[Component]) -> Table:
    table = Table(title="medrecon components", title_justify="left")
    for col in ("kind", "name", "provider", "version", "summary"):
        table.add_column(col, overflow="fold")
    for c in components:
        dist = c.provider.distribution or "-"
        table.add_row(
            c.kind,
            c.name,
            f"{dist} ({c.provider.plugin})",
            c.provider.version or "-",
            c.spec.summary,
        )
    return table


def failed_table(failed: list[FailedPlugin]) -> Table:
    table = Table(title="failed plugins (skipped)", title_justify="left", style="red")
    for col in ("plugin", "distribution", "error"):
        table.add_column(col, overflow="fold")
    for f in failed:
        table.add_row(f.plugin, f.distribution or "-", f.error)
    return table


def describe_table(comp: Component) -> Table:
    rec = component_record(comp, parameters=True)
    title = f"{comp.kind} '{comp.name}': {comp.spec.summary}\nfrom {comp.provider}"
    if "requires" in rec:
        title += f"\nrequires: {', '.join(rec['requires']) or 'nothing'}"
    table = Table(title=title, title_justify="left")
    for col in ("parameter", "type", "default"):
        table.add_column(col, overflow="fold")
    for p in rec["parameters"]:
        default = "(required)" if p["required"] else repr(p["default"])
        table.add_row(p["name"], p["type"], default)
    return table
