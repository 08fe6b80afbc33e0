"""The records a plugin's hooks yield: one per operator, prior or sampler it provides (**contract**)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from medrecon.params import Parameter, parameters_of

_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


@dataclass(frozen=True)
class ComponentSpec:
    """A named component: `factory(**params)` builds it; its signature is its parameter schema."""

    name: str
    factory: Callable
    summary: str
    kind: ClassVar[str] = "component"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(
                f"{self.kind} name {self.name!r} is not valid: use lower-case words joined by '-', "
                "such as 'mri-multicoil'"
            )
        if not callable(self.factory):
            raise TypeError(f"{self.kind} '{self.name}': factory must be callable, got {self.factory!r}")
        if not isinstance(self.summary, str) or not self.summary.strip():
            raise ValueError(f"{self.kind} '{self.name}': summary must be a non-empty string")
        parameters_of(self.factory)  # fails early on a factory whose signature cannot be a schema

    @property
    def parameters(self) -> tuple[Parameter, ...]:
        return parameters_of(self.factory)


@dataclass(frozen=True)
class OperatorSpec(ComponentSpec):
    kind: ClassVar[str] = "operator"


@dataclass(frozen=True)
class PriorSpec(ComponentSpec):
    kind: ClassVar[str] = "prior"


@dataclass(frozen=True)
class SamplerSpec(ComponentSpec):
    kind: ClassVar[str] = "sampler"


SPEC_TYPES: dict[str, type[ComponentSpec]] = {
    "operator": OperatorSpec,
    "prior": PriorSpec,
    "sampler": SamplerSpec,
}
