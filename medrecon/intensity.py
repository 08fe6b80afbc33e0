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
    problem: Problem,
    data_range: tuple[float, float],
    *,
    iterations: int = 20,
    background: float | None = None,
    quantile: float = 0.995,
) -> IntensityMap:
    """The map into a prior's intensity range, from a CG reconstruction.

    With `background` None (a prior trained on images whose empty space is the range's low end),
    scale and offset put the CG estimate's 1st..99th percentiles onto data_range. With a
    `background` value (a prior trained on images divided by the `quantile` of their magnitude, the
    native-resolution priors), only a scale: that quantile of |estimate| goes to the range's high
    end and zero to `background`; this also holds for complex images (phase is kept)."""
    op = problem.operator
    estimate = conjugate_gradient(op.gram, op.adjoint(problem.y), iterations=iterations)
    source = f"CG ({iterations} iterations)"
    if background is None:
        return percentile_map(estimate.real, data_range, source)
    scale = magnitude_scale(estimate, quantile) / (data_range[1] - background)
    return IntensityMap(scale, -background * scale, f"{source}, |x| quantile {quantile} -> {data_range[1]}")


def magnitude_scale(values: torch.Tensor, q: float = 0.995) -> float:
    """The q-quantile of |values| (the 99.5th percentile by default): the intensity that a prior
    trained at native resolution maps to 1 (its training volumes were divided by the same)."""
    flat = values.detach().abs().flatten().float()
    if flat.numel() > 1_000_000:  # quantile has a size limit; a strided subsample is plenty
        flat = flat[:: flat.numel() // 1_000_000 + 1]
    scale = float(torch.quantile(flat, q))
    return scale if scale > 0 else 1.0


def percentile_map(values: torch.Tensor, data_range: tuple[float, float], source: str) -> IntensityMap:
    """The map that puts the 1st..99th percentiles of `values` onto data_range."""
    values = values.flatten().float()
    if values.numel() > 1_000_000:  # quantile has a size limit; a strided subsample is plenty
        values = values[:: values.numel() // 1_000_000 + 1]
    low, high = torch.quantile(values, torch.tensor([0.01, 0.99], device=values.device)).tolist()
    lo, hi = data_range
    scale = (high - low) / (hi - lo) if high > low else 1.0
    return IntensityMap(scale, low - lo * scale, f"{source}, percentiles 1-99 -> {list(data_range)}")
