"""Human- and machine-readable descriptions of the registered components."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from medrecon.host.params import CONTEXT_PARAMETERS
from medrecon.host.plugin import Component, FailedPlugin


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
            escape(c.spec.summary),
        )
    return table


def failed_table(failed: list[FailedPlugin]) -> Table:
    table = Table(title="failed plugins (skipped)", title_justify="left", style="red")
    for col in ("plugin", "distribution", "error"):
        table.add_column(col, overflow="fold")
    for f in failed:
        table.add_row(f.plugin, f.distribution or "-", escape(f.error))
    return table


def parameter_notes(factory: Any) -> dict[str, str]:
    """One line per parameter from the factory's docstring: the first sentence that names it in
    backticks (`tv_z` ...) or as its subject ("tv_z (lambda) and rho ..."), shortened to 100 characters."""
    import inspect
    import re

    doc = inspect.getdoc(factory) or ""
    if inspect.isclass(factory):  # then the bases' (a sampler's shared `samples`, `eta` ...)
        doc += "\n\n" + (inspect.getdoc(factory.__init__) or "")
        for base in factory.__mro__[1:]:
            if base.__module__ != "builtins" and base.__doc__:
                doc += "\n\n" + inspect.cleandoc(base.__doc__)
    sentences = re.split(r"(?<=[.;])\s+|\n\s*\n|\n\s*- ", " ".join(doc.split("\n")).replace("  ", " "))
    notes = {}
    for name in inspect.signature(factory).parameters:
        pattern = re.compile(rf"`{re.escape(name)}`|(?<![\w.])\b{re.escape(name)}\b(?= *[(=:,])")
        for sentence in sentences:
            if pattern.search(sentence):
                text = " ".join(sentence.split())
                notes[name] = text if len(text) <= 100 else text[:97].rstrip() + "..."
                break
    return notes


def describe_table(comp: Component) -> Group:
    """A heading (kind, name, summary, provider, requirements) and the parameter table."""
    rec = component_record(comp, parameters=True)
    heading = Text.assemble((f"{comp.kind} '{comp.name}'", "bold"), f": {comp.spec.summary}\n")
    heading.append(f"from {comp.provider}")
    if "requires" in rec:
        heading.append(f"\nrequires: {', '.join(rec['requires']) or 'nothing'}")
    table = Table()
    for col in ("parameter", "type", "default", "note"):
        table.add_column(col, overflow="fold")
    arrays = {p.name for p in comp.spec.parameters if p.is_array}
    notes = parameter_notes(comp.spec.factory)
    for p in rec["parameters"]:
        default = "(required)" if p["required"] else repr(p["default"])
        note = notes.get(p["name"], "")
        if p["name"] in CONTEXT_PARAMETERS:
            note = "filled from the data"
        elif p["name"] in arrays:
            note = f"array: from a bundle or Python. {note}".strip()
        table.add_row(p["name"], escape(p["type"]), escape(default), note)
    return Group(heading, table)
