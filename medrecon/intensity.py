"""Mapping a problem into the intensity range a learned prior was trained on, and back.

A prior trained on images normalised to [lo, hi] sees x = s z + o, z in [lo, hi]. For a linear
operator A: y = A x + n becomes y' = (y - A(o 1)) / s = A z + n / s, so the model-space problem
keeps the same operator, with noise level sigma / s. s and o come from a quick classical estimate
of x (conjugate gradient on the normal equations) and its 1st and 99th percentiles.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from medrecon.contracts import Problem
from medrecon.numerics import conjugate_gradient


@dataclass(frozen=True)
class IntensityMap:
    scale: float
    offset: float
    source: str

    def to_model(self, problem: Problem) -> Problem:
        op = problem.operator
        ones = torch.ones(op.domain_shape, dtype=op.domain_dtype, device=problem.y.device)
        y = (problem.y - op(ones) * self.offset) / self.scale
        return Problem(op, y, problem.noise_std / self.scale)

    def to_physical(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.scale + self.offset

    def describe(self) -> dict:
        return {"scale": self.scale, "offset": self.offset, "from": self.source}


def estimate_intensity_map(
    problem: Problem, data_range: tuple[float, float], *, iterations: int = 20
) -> IntensityMap:
    """Scale and offset that put the 1st..99th percentiles of a CG reconstruction onto data_range."""
    op = problem.operator
    estimate = conjugate_gradient(op.gram, op.adjoint(problem.y), iterations=iterations)
    return percentile_map(estimate.real, data_range, f"CG ({iterations} iterations)")


def percentile_map(values: torch.Tensor, data_range: tuple[float, float], source: str) -> IntensityMap:
    """The map that puts the 1st..99th percentiles of `values` onto data_range."""
    values = values.flatten().float()
    if values.numel() > 1_000_000:  # quantile has a size limit; a strided subsample is plenty
        values = values[:: values.numel() // 1_000_000 + 1]
    low, high = torch.quantile(values, torch.tensor([0.01, 0.99], device=values.device)).tolist()
    lo, hi = data_range
    scale = (high - low) / (hi - lo) if high > low else 1.0
    return IntensityMap(scale, low - lo * scale, f"{source}, percentiles 1-99 -> {list(data_range)}")
