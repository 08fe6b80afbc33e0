"""A component's parameters, read from its factory's signature: one schema for recipes, CLI and GUI."""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medrecon.errors import RecipeError, listing, suggest

REQUIRED = inspect.Parameter.empty

# Parameters the host fills from the data when a recipe does not give them: the image shape, and
# the measurement y (for self-calibrating operators, such as ESPIRiT coil maps from k-space).
CONTEXT_PARAMETERS = frozenset({"shape", "measurement"})


@dataclass(frozen=True)
class Parameter:
    """One keyword parameter of a component factory."""

    name: str
    annotation: Any
    default: Any = REQUIRED

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def is_array(self) -> bool:
        """Whether the parameter takes an array (coil maps, mask, angles): set from data, not text."""
        return _is_array_type(self.annotation)

    @property
    def type_name(self) -> str:
        return type_name(self.annotation)

    def coerce(self, value: Any, owner: str) -> Any:
        """Check `value` against the annotation and convert it (e.g. int -> float); raise RecipeError."""
        try:
            return _coerce(value, self.annotation)
        except (TypeError, ValueError) as err:
            raise RecipeError(
                f"parameter '{self.name}' of {owner} expects {self.type_name}, "
                f"got {value!r} ({type(value).__name__}){': ' + str(err) if str(err) else ''}"
            ) from None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type_name,
            "default": None if self.required else _jsonable(self.default),
            "required": self.required,
        }


def parameters_of(factory: Callable) -> tuple[Parameter, ...]:
    """The keyword parameters of a factory (a class or a function), with type hints and defaults."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        hints = typing.get_type_hints(target)
    except Exception as err:  # a schema that cannot be read must not silently accept anything
        raise TypeError(
            f"{getattr(factory, '__qualname__', factory)!r}: cannot resolve the type hints of its "
            f"parameters ({type(err).__name__}: {err}); import the names they use at module level"
        ) from None
    signature = inspect.signature(factory)
    out = []
    for p in signature.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name == "self":
            continue
        if p.kind is p.POSITIONAL_ONLY:
            raise TypeError(f"{factory!r}: positional-only parameter '{p.name}' cannot be set by name")
        out.append(Parameter(p.name, hints.get(p.name, Any), p.default))
    return tuple(out)


def coerce_params(
    factory: Callable,
    given: Mapping[str, Any],
    owner: str,
    *,
    allow_missing: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Validate `given` against the factory's parameters; unknown, ill-typed or missing ones raise."""
    params = {p.name: p for p in parameters_of(factory)}
    out: dict[str, Any] = {}
    for key, value in given.items():
        if key not in params:
            raise RecipeError(
                f"{owner} has no parameter '{key}'{suggest(key, params)}; valid parameters: {listing(params)}"
            )
        out[key] = params[key].coerce(value, owner)
    missing = [n for n, p in params.items() if p.required and n not in out and n not in allow_missing]
    if missing:
        raise RecipeError(f"{owner} needs parameter(s) {listing(missing)}, which were not given")
    return out


def type_name(annotation: Any) -> str:
    if annotation is Any or annotation is REQUIRED:
        return "any"
    if _is_array_type(annotation) and not _union_args(annotation):
        return "array"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if _union_args(annotation):
        return " | ".join(type_name(a) for a in _union_args(annotation))
    if origin in (tuple, list):
        name = origin.__name__
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return f"tuple[{type_name(args[0])}, ...]"
        return f"{name}[{', '.join(type_name(a) for a in args)}]" if args else name
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


def _union_args(annotation: Any) -> tuple:
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(annotation)
    return ()


def _is_array_type(annotation: Any) -> bool:
    if annotation is np.ndarray or getattr(annotation, "__name__", "") in ("Tensor", "ArrayLike"):
        return True
    if typing.get_origin(annotation) is np.ndarray:
        return True
    return any(_is_array_type(a) for a in _union_args(annotation))


def _coerce(value: Any, annotation: Any) -> Any:
    if annotation is Any or annotation is REQUIRED:
        return value
    union = _union_args(annotation)
    if union:
        if value is None and type(None) in union:
            return None
        for option in union:
            if option is type(None):
                continue
            try:
                return _coerce(value, option)
            except (TypeError, ValueError):
                continue
        raise ValueError("")  # the caller's message names the expected union
    if _is_array_type(annotation):
        if hasattr(value, "detach"):  # a torch tensor stays a tensor
            return value
        arr = np.asarray(value)
        if arr.dtype == object:
            raise ValueError("not a numeric array")
        return arr
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        if value not in args:
            raise ValueError(f"choose one of {', '.join(repr(a) for a in args)}")
        return value
    if origin in (tuple, list) or annotation in (tuple, list):
        if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
            raise TypeError("not a sequence")
        items = list(value)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(items) != len(args):
                raise ValueError(f"needs {len(args)} items, got {len(items)}")
            return tuple(_coerce(v, a) for v, a in zip(items, args, strict=True))
        item_type = args[0] if args else Any
        converted = [_coerce(v, item_type) for v in items]
        return tuple(converted) if (origin or annotation) is tuple else converted
    if annotation is bool:
        if isinstance(value, bool | np.bool_):
            return bool(value)
        raise TypeError("not a boolean")
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise TypeError("not an integer")
        return int(value)
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise TypeError("not a number")
        if not np.isfinite(value):  # inf or nan: no setting means that
            raise TypeError("not a finite number")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise TypeError("not a string")
        return value
    if annotation is Path:
        if not isinstance(value, str | Path):
            raise TypeError("not a path")
        return Path(value)
    if isinstance(annotation, type) and not isinstance(value, annotation):
        raise TypeError(f"not a {annotation.__name__}")
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, int | float | str | bool | list | dict) or value is None:
        return value
    return repr(value)
