"""The plugin host: finds operators, priors and samplers (and the training tasks, datasets and
measurement readers plugins contribute) through pluggy and the `medrecon` entry points."""

from __future__ import annotations

import importlib.metadata as md
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from medrecon.errors import PluginError, listing, suggest
from medrecon.host.specs import (
    SPEC_TYPES,
    ComponentSpec,
    DatasetSpec,
    OperatorSpec,
    PriorSpec,
    ReaderSpec,
    SamplerSpec,
    TaskSpec,
)

log = logging.getLogger(__name__)

PROJECT = "medrecon"
ENTRY_POINT_GROUP = "medrecon"
DISABLE_ENV = "MEDRECON_DISABLE_PLUGINS"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class HookSpecs:
    """The hooks a plugin may implement; each returns an iterable of spec records."""

    @hookspec
    def medrecon_operators(self) -> Iterable[OperatorSpec]:
        """Operators (forward models) this plugin provides."""

    @hookspec
    def medrecon_priors(self) -> Iterable[PriorSpec]:
        """Priors this plugin provides."""

    @hookspec
    def medrecon_samplers(self) -> Iterable[SamplerSpec]:
        """Samplers (solvers) this plugin provides."""

    @hookspec
    def medrecon_training_tasks(self) -> Iterable[TaskSpec]:
        """Operator families `medrecon train-conditional` may train on (optional)."""

    @hookspec
    def medrecon_datasets(self) -> Iterable[DatasetSpec]:
        """Generated image collections `medrecon train-prior --dataset` may train on (optional)."""

    @hookspec
    def medrecon_readers(self) -> Iterable[ReaderSpec]:
        """File formats of measurements `medrecon.load_bundle` may read besides bundles (optional)."""


HOOKS = {
    "operator": "medrecon_operators",
    "prior": "medrecon_priors",
    "sampler": "medrecon_samplers",
    "task": "medrecon_training_tasks",
    "dataset": "medrecon_datasets",
    "reader": "medrecon_readers",
}


@dataclass(frozen=True)
class Provider:
    """Where a component comes from: the plugin (entry point) name and its distribution."""

    plugin: str
    distribution: str | None = None
    version: str | None = None

    @property
    def builtin(self) -> bool:
        return self.distribution == PROJECT

    def __str__(self) -> str:
        dist = f"{self.distribution} {self.version}" if self.distribution else "not installed"
        return f"plugin '{self.plugin}' ({dist})"


@dataclass(frozen=True)
class Component:
    spec: ComponentSpec
    provider: Provider

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class FailedPlugin:
    plugin: str
    distribution: str | None
    error: str


@dataclass
class PluginHost:
    """A registry of components built from the plugins registered with it.

    `PluginHost.from_entry_points()` is what the CLI, the napari widget and the API use; tests make a
    bare `PluginHost()` and `register` plugins explicitly.
    """

    manager: pluggy.PluginManager = field(default_factory=lambda: pluggy.PluginManager(PROJECT))
    failed: list[FailedPlugin] = field(default_factory=list)
    #: entry points left out by $MEDRECON_DISABLE_PLUGINS (or `disabled`)
    disabled: list[str] = field(default_factory=list)
    _providers: dict[str, Provider] = field(default_factory=dict)
    _components: dict[str, dict[str, Component]] | None = None

    def __post_init__(self) -> None:
        self.manager.add_hookspecs(HookSpecs)

    @classmethod
    def from_entry_points(
        cls, *, builtins_only: bool = False, disabled: Iterable[str] | None = None
    ) -> PluginHost:
        """Load every `medrecon` entry point, less those disabled (by name or distribution).

        `disabled` defaults to the comma-separated names in $MEDRECON_DISABLE_PLUGINS.
        """
        if disabled is None:
            disabled = [s.strip() for s in os.environ.get(DISABLE_ENV, "").split(",") if s.strip()]
        disabled = set(disabled)
        host = cls()
        points = sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
        known = {ep.name for ep in points} | {ep.dist.name for ep in points if ep.dist is not None}
        for name in sorted(disabled - known):
            from medrecon.errors import suggest

            log.warning(
                "%s names '%s', which is no installed plugin or distribution%s; known: %s",
                DISABLE_ENV,
                name,
                suggest(name, known),
                ", ".join(sorted(known)),
            )
        for ep in points:
            dist = ep.dist.name if ep.dist is not None else None
            version = ep.dist.version if ep.dist is not None else None
            if builtins_only and dist != PROJECT:
                continue
            if ep.name in disabled or (dist is not None and dist in disabled):
                log.info("plugin '%s' disabled", ep.name)
                host.disabled.append(ep.name)
                continue
            try:
                plugin = ep.load()
            except Exception as err:  # a broken plugin must not take the others down
                host._fail(ep.name, dist, f"import failed: {type(err).__name__}: {err}")
                continue
            host.register(plugin, name=ep.name, distribution=dist, version=version)
        return host

    def register(
        self,
        plugin: ModuleType | object,
        *,
        name: str | None = None,
        distribution: str | None = None,
        version: str | None = None,
    ) -> None:
        """Register an object or module holding `@medrecon.hookimpl` functions."""
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        try:
            self.manager.register(plugin, name=name)
        except Exception as err:
            self._fail(name, distribution, f"registration failed: {type(err).__name__}: {err}")
            return
        self._providers[name] = Provider(name, distribution, version)
        self._components = None

    def _fail(self, plugin: str, distribution: str | None, error: str) -> None:
        log.warning("medrecon plugin '%s' skipped: %s", plugin, error)
        self.failed.append(FailedPlugin(plugin, distribution, error))

    @property
    def components(self) -> dict[str, dict[str, Component]]:
        """{kind: {name: Component}}, collected once from every registered plugin's hooks."""
        if self._components is None:
            self._components = self._collect()
        return self._components

    def _collect(self) -> dict[str, dict[str, Component]]:
        out: dict[str, dict[str, Component]] = {kind: {} for kind in HOOKS}
        broken: set[str] = set()
        for kind, hook_name in HOOKS.items():
            hook = getattr(self.manager.hook, hook_name)
            # Call each implementation on its own, so one plugin that raises is skipped alone.
            for impl in hook.get_hookimpls():
                plugin_name = impl.plugin_name
                if plugin_name in broken:
                    continue
                provider = self._providers.get(plugin_name, Provider(plugin_name))
                try:
                    specs = list(impl.function() or ())
                    for spec in specs:
                        _check_spec(spec, kind, plugin_name)
                except Exception as err:
                    broken.add(plugin_name)
                    self._fail(
                        plugin_name,
                        provider.distribution,
                        f"hook {hook_name} raised {type(err).__name__}: {err}",
                    )
                    continue
                for spec in specs:
                    other = out[kind].get(spec.name)
                    if other is not None:
                        raise PluginError(
                            f"two plugins provide the {kind} '{spec.name}': {other.provider} and "
                            f"{provider}; uninstall one or disable it with {DISABLE_ENV}"
                        )
                    out[kind][spec.name] = Component(spec, provider)
        for kind in out:  # drop what a plugin gave before one of its other hooks failed
            out[kind] = {n: c for n, c in out[kind].items() if c.provider.plugin not in broken}
        return out

    def get(self, kind: str, name: str) -> Component:
        """The component `name` of `kind`; an unknown name gets the list of valid ones."""
        if kind not in HOOKS:
            raise PluginError(f"unknown component kind '{kind}': expected one of {listing(HOOKS)}")
        found = self.components[kind].get(name)
        if found is None:
            valid = self.components[kind]
            missing = []
            if self.disabled:
                missing.append(f"plugins disabled by {DISABLE_ENV}: {listing(self.disabled)}")
            if self.failed:
                missing.append(f"plugins that failed to load: {listing([f.plugin for f in self.failed])}")
            hint = f" ({'; '.join(missing)}: it may come from one of them)" if missing else ""
            raise PluginError(
                f"no {kind} named '{name}'{suggest(name, valid)}; installed {kind}s: {listing(valid)}" + hint
            )
        return found

    def find(self, name: str) -> list[Component]:
        """Every component called `name`, whatever its kind."""
        return [c[name] for c in self.components.values() if name in c]

    def all_components(self) -> list[Component]:
        return [c for kind in HOOKS for c in sorted(self.components[kind].values(), key=_by_name)]


def _by_name(c: Component) -> str:
    return c.name


def _check_spec(spec: Any, kind: str, plugin: str) -> None:
    expected = SPEC_TYPES[kind]
    if not isinstance(spec, expected):
        raise TypeError(f"expected {expected.__name__} records, got {type(spec).__name__}")


_default_host: PluginHost | None = None


def default_host() -> PluginHost:
    """The process-wide host loaded from entry points (created on first use)."""
    global _default_host
    if _default_host is None:
        _default_host = PluginHost.from_entry_points()
    return _default_host
