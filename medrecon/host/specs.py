"""The records a plugin's hooks yield: one per operator, prior or sampler it provides (**contract**),
and, optionally, one per training task or training dataset it contributes to the core's training
commands (so that the core names no physics: `medrecon train-conditional` draws its operators from
the tasks, `medrecon train-prior --dataset` its images from a dataset), and one per file format of
measurements it reads (`medrecon.load_bundle` hands it the files that are no medrecon bundle)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from medrecon.host.params import Parameter, parameters_of

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
                "such as 'blind-dps'"
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


@dataclass(frozen=True)
class TaskSpec(ComponentSpec):
    """A family of operators to train conditional models on: `factory(**ranges)` returns a
    `medrecon.TrainingTask` (its parameters are the ranges a user may change)."""

    kind: ClassVar[str] = "task"


@dataclass(frozen=True)
class DatasetSpec(ComponentSpec):
    """Generated training images for an image prior: `factory(count, seed, **params)` returns
    `medrecon.TrainingImages`."""

    kind: ClassVar[str] = "dataset"


@dataclass(frozen=True)
class ReaderSpec(ComponentSpec):
    """A file format of measurements: `factory(**options)` returns a `medrecon.MeasurementReader`
    (every option has a default: the reader is built without options to look at a file)."""

    kind: ClassVar[str] = "reader"


SPEC_TYPES: dict[str, type[ComponentSpec]] = {
    "operator": OperatorSpec,
    "prior": PriorSpec,
    "sampler": SamplerSpec,
    "task": TaskSpec,
    "dataset": DatasetSpec,
    "reader": ReaderSpec,
}
