"""Exceptions with messages that say what was wrong and what would be right."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class MedreconError(Exception):
    """Base class for every error medrecon raises on purpose."""


class InputError(MedreconError, ValueError):
    """A file, array or argument given to medrecon is not what it must be."""


class RecipeError(InputError):
    """A recipe names an unknown component or parameter, or a value of the wrong type."""


class PluginError(MedreconError):
    """Plugins conflict (two claim one name) or a requested component is not registered."""


class IncompatibleError(InputError):
    """A sampler cannot run with the given operator and prior."""


class NumericalError(MedreconError):
    """A run produced NaN or infinite values; it was stopped and nothing was written."""


class Cancelled(MedreconError):
    """A run was cancelled between two steps; nothing was written."""


def suggest(name: str, valid: Iterable[str]) -> str:
    """Return ' (did you mean 'x'?)' for the closest valid name, or ''."""
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def listing(valid: Iterable[str]) -> str:
    """Format valid choices for an error message."""
    names = sorted(valid)
    return ", ".join(f"'{n}'" for n in names) if names else "none"
