"""Filtered back-projection as a sampler: the CT plugin's own, since only its operator has FBP."""

from __future__ import annotations

from collections.abc import Generator
from typing import Literal

from medrecon import NO_PRIOR, InputError, Prior, Problem, Reconstruction, Requirement, Sampler, Step
from medrecon_ct.parallel import ParallelBeamCT

FILTERED_BACKPROJECTION = Requirement(
    "filtered-backprojection",
    "an operator with filtered back-projection (such as ct-parallel)",
    lambda op, pr: isinstance(op, ParallelBeamCT),
    lambda op, pr: f"operator {type(op).__name__} has no fbp()",
)


class FBPSampler(Sampler):
    """Filtered back-projection, the classical CT reconstruction, with a choice of ramp window."""

    requires = (FILTERED_BACKPROJECTION, NO_PRIOR)

    def __init__(self, window: Literal["ramp", "shepp-logan", "cosine", "hamming", "hann"] = "ramp"):
        windows = ("ramp", "shepp-logan", "cosine", "hamming", "hann")
        if window not in windows:
            raise InputError(f"fbp: unknown window {window!r}; choose one of {', '.join(windows)}")
        self.window = window

    def iterate(
        self, problem: Problem, prior: Prior | None, *, seed: int = 0
    ) -> Generator[Step, None, Reconstruction]:
        x = problem.operator.fbp(problem.y, window=self.window)
        yield Step(0, 1, x)
        return Reconstruction(x, info={"nfe": 0, "sampler": "fbp", "window": self.window})
