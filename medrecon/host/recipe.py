"""Recipes: one declarative description of a run (operator, prior, sampler), validated up front."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from medrecon.errors import PluginError, RecipeError, listing, suggest
from medrecon.host.params import CONTEXT_PARAMETERS, coerce_params
from medrecon.host.plugin import Component, PluginHost

#: the sections of a recipe (the hooks for training tasks and datasets are not recipe sections)
SECTIONS = ("operator", "prior", "sampler")


def parse_value(text: str) -> Any:
    """A parameter typed as text: a TOML value (8, 0.5, true, [0, 90], "x"), else the bare string.

    Used for -p key=value on the command line and the text fields of the napari forms.
    """
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_assignments(
    items: Iterable[str], option: str, example: str, value: Callable[[str], Any] = parse_value
) -> dict[str, Any]:
    """KEY=VALUE items (from the command line) as {KEY: value(VALUE)}, values typed as in recipes;
    an item that is not KEY=VALUE is a RecipeError naming `option` and an `example`."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"{option} {item!r} must look like KEY=VALUE (e.g. {example})")
        out[key.strip()] = value(text.strip())
    return out


def parse_overrides(items: Iterable[str], default_section: str | None = None) -> dict[str, dict[str, Any]]:
    """-p section.key=value items (key=value in `default_section`) as {section: {key: value}}, what
    `Recipe.override` takes."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in parse_assignments(items, "parameter", "sampler.steps=50").items():
        section, dot, name = key.rpartition(".")
        if not dot:
            if default_section is None:
                raise RecipeError(
                    f"parameter {key!r} needs its section: operator.{key}=..., prior.{key}=... "
                    f"or sampler.{key}=..."
                )
            section, name = default_section, key
        out.setdefault(section, {})[name] = value
    return out


def toml_value(value: Any) -> str:
    """A TOML literal for a parameter value: booleans, numbers, strings and (nested) lists."""
    import json
    import math

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise RecipeError(f"a recipe value must be a number, string, boolean or list, got {type(value).__name__}")


@dataclass(frozen=True)
class ComponentRecipe:
    """A component by name with its parameters."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, section: str, data: Mapping[str, Any]) -> ComponentRecipe:
        if isinstance(data, str):
            return cls(data, {})
        if not isinstance(data, Mapping):
            raise RecipeError(
                f"recipe section [{section}] must be a table with a 'name', got {type(data).__name__}"
            )
        if "name" not in data or not isinstance(data["name"], str):
            raise RecipeError(f'recipe section [{section}] needs name = "..." naming the {section}')
        params = {k: v for k, v in data.items() if k != "name"}
        return cls(data["name"], params)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.params}


def _check_sections(names: Iterable[str]) -> None:
    """A RecipeError for the first name that is no recipe section."""
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        name = unknown[0]
        raise RecipeError(
            f"unknown recipe section '{name}'{suggest(name, SECTIONS)}; valid: {listing(SECTIONS)}"
        )


@dataclass(frozen=True)
class ResolvedComponent:
    """A recipe section checked against the installed component: the component (its spec and
    provider) and the coerced parameters. `Recipe.resolve` makes them and the builders
    (`medrecon.build_operator`, `medrecon.build_component`) take them, so that a run looks each
    component up and checks its parameters once."""

    section: str
    component: Component
    params: Mapping[str, Any]

    @property
    def name(self) -> str:
        return self.component.name

    @property
    def spec(self):
        return self.component.spec

    def recipe(self) -> ComponentRecipe:
        return ComponentRecipe(self.name, dict(self.params))


@dataclass(frozen=True)
class Recipe:
    """Operator, prior and sampler, each optional (a measurement bundle carries its operator)."""

    operator: ComponentRecipe | None = None
    prior: ComponentRecipe | None = None
    sampler: ComponentRecipe | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recipe:
        if not isinstance(data, Mapping):
            raise RecipeError(f"a recipe must be a table/dict, got {type(data).__name__}")
        unknown = [k for k in data if k not in SECTIONS]
        if unknown:
            raise RecipeError(
                f"unknown recipe section [{unknown[0]}]{suggest(unknown[0], SECTIONS)}; "
                f"valid sections: {listing(SECTIONS)}"
            )
        return cls(**{k: ComponentRecipe.from_dict(k, v) for k, v in data.items()})

    @classmethod
    def from_toml(cls, path: str | Path) -> Recipe:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as err:
            raise RecipeError(f"cannot read recipe {path}: {err.strerror}") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise RecipeError(f"recipe {path} is not valid TOML: {err}") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, source: Recipe | Mapping[str, Any] | str | Path | None) -> Recipe:
        """A Recipe from a Recipe, a dict, or a TOML file path."""
        if source is None:
            return cls()
        if isinstance(source, Recipe):
            return source
        if isinstance(source, Mapping):
            return cls.from_dict(source)
        return cls.from_toml(source)

    def replace(self, **sections: ComponentRecipe | None) -> Recipe:
        data = {k: getattr(self, k) for k in SECTIONS}
        data.update({k: v for k, v in sections.items() if v is not None})
        return Recipe(**data)

    def override(self, params: Mapping[str, Mapping[str, Any]] | None = None, **names: str | None) -> Recipe:
        """This recipe with components switched by name (`sampler="dds"`: another component, so the
        recipe's parameters for the old one are dropped) and `params` ({section: {key: value}}, from
        `parse_overrides`) merged in: what the CLI's --sampler, --prior, --simulate and -p do."""
        params = dict(params or {})
        _check_sections([*params, *names])
        sections = {}
        for section in SECTIONS:
            current = getattr(self, section)
            name = names.get(section)
            if name and (current is None or current.name != name):
                current = ComponentRecipe(name, {})
            extra = params.get(section)
            if extra:
                if current is None:
                    raise RecipeError(f"parameters given for [{section}] but no {section} is named")
                current = ComponentRecipe(current.name, {**current.params, **extra})
            sections[section] = current
        return Recipe(**sections)

    def without(self, *sections: str) -> Recipe:
        """This recipe less some sections (e.g. "operator", for a measurement that brings its own)."""
        _check_sections(sections)
        return Recipe(**{k: getattr(self, k) for k in SECTIONS if k not in sections})

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k).to_dict() for k in SECTIONS if getattr(self, k) is not None}

    def to_toml(self) -> str:
        """The recipe as the TOML `medrecon reconstruct --recipe` reads (one table per section)."""
        tables = []
        for section, table in self.to_dict().items():
            lines = [f"[{section}]"] + [f"{key} = {toml_value(value)}" for key, value in table.items()]
            tables.append("\n".join(lines))
        return "\n\n".join(tables) + "\n"

    def save(self, path: str | Path) -> Path:
        """Write the recipe as TOML, atomically."""
        from medrecon.io.atomic import write_text

        write_text(path, self.to_toml())
        return Path(path)

    def resolve(self, host: PluginHost) -> dict[str, ResolvedComponent]:
        """Look every section's component up and check its parameters against the factory, once:
        {section: ResolvedComponent} for the sections present.

        Array parameters (coil maps, masks) may be missing here: they come with the data.
        """
        out = {}
        for section in SECTIONS:
            comp = getattr(self, section)
            if comp is None:
                continue
            try:
                component = host.get(section, comp.name)
            except PluginError as err:
                raise RecipeError(str(err)) from None
            spec = component.spec
            array_params = frozenset(p.name for p in spec.parameters if p.is_array)
            params = coerce_params(
                spec.factory,
                comp.params,
                f"{section} '{comp.name}'",
                allow_missing=CONTEXT_PARAMETERS | array_params,
            )
            out[section] = ResolvedComponent(section, component, params)
        return out

    @classmethod
    def from_resolved(cls, resolved: Mapping[str, ResolvedComponent]) -> Recipe:
        """The recipe of `resolve`'s components, with their coerced parameters."""
        return cls(**{section: r.recipe() for section, r in resolved.items()})

    def validate(self, host: PluginHost) -> Recipe:
        """Check every name and parameter against the installed factories; return coerced values
        (`resolve`, as a Recipe)."""
        return Recipe.from_resolved(self.resolve(host))
