"""Mapping a problem into the intensity range a learned prior was trained on, and back.

A prior trained on images normalised to [lo, hi] sees x = s z + o, z in [lo, hi]. For a linear
operator A: y = A x + n becomes y' = (y - A(o 1)) / s = A z + n / s, so the model-space problem
keeps the same operator, with noise level sigma / s. s and o come from a quick classical estimate
of x (conjugate gradient on the normal equations) and its 1st and 99th percentiles.

Complex images (MRI) carry a smooth background phase phi (field, coil and receive phase). A prior
that models real images sees x = exp(i phi) (s z + o) instead: phi is estimated from the low
spatial frequencies of the same classical estimate (the calibration region that every accelerated
acquisition samples fully), and the model-space operator is A diag(exp(i phi)), still linear, with
the same A A^H. z is then close to real, the magnitude-like image the prior knows best, and its
imaginary part holds only what the phase estimate missed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from medrecon.contracts import Operator, Problem
from medrecon.numerics import conjugate_gradient, fft2c, ifft2c

#: the central fraction of k-space (per in-plane axis) the background phase is estimated from
PHASE_LOWPASS = 0.125


@dataclass(frozen=True)
class IntensityMap:
    scale: float
    offset: float
    source: str
    #: the background phase (radians, the image's shape) taken out of complex images, or None
    phase: torch.Tensor | None = None

    def to_model(self, problem: Problem) -> Problem:
        op = problem.operator if self.phase is None else PhaseModulated(problem.operator, self.phase)
        ones = torch.ones(op.domain_shape, dtype=op.domain_dtype, device=problem.y.device)
        y = (problem.y - op(ones) * self.offset) / self.scale
        weight = problem.inverse_variance  # of the physical y: the model's residual is 1 / scale of it
        weight = None if weight is None else weight * self.scale**2
        return Problem(op, y, problem.noise_std / self.scale, inverse_variance=weight)

    def to_physical(self, z: torch.Tensor) -> torch.Tensor:
        x = z * self.scale + self.offset
        return x if self.phase is None else x * torch.exp(1j * self.phase.to(x.device))

    def from_physical(self, x: torch.Tensor) -> torch.Tensor:
        """The inverse of `to_physical`: an image in physical units, in the model's."""
        if self.phase is not None:
            x = x * torch.exp(-1j * self.phase.to(x.device))
        return (x - self.offset) / self.scale

    def describe(self) -> dict:
        out = {"scale": self.scale, "offset": self.offset, "from": self.source}
        if self.phase is not None:
            out["phase"] = (
                f"background phase removed (estimated from the central {PHASE_LOWPASS:g} of the "
                "image's Fourier transform)"
            )
        return out


class PhaseModulated(Operator):
    """A diag(exp(i phi)): the operator seen by a prior that works on demodulated images.

    diag(exp(i phi)) is unitary, so A A^H, and with it every range-space solve, is A's own."""

    def __init__(self, inner: Operator, phase: torch.Tensor):
        super().__init__()
        if tuple(phase.shape) != tuple(inner.domain_shape) or not inner.domain_dtype.is_complex:
            raise ValueError(f"a phase of shape {tuple(inner.domain_shape)} for a complex domain is needed")
        self.inner = inner
        self.register_buffer("modulation", torch.exp(1j * phase.float()).to(inner.domain_dtype))
        self.domain_shape, self.range_shape = inner.domain_shape, inner.range_shape
        self.domain_dtype, self.range_dtype = inner.domain_dtype, inner.range_dtype
        self.slice_axis = inner.slice_axis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x * self.modulation)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.inner.adjoint(y) * self.modulation.conj()

    def gram(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.gram(x * self.modulation) * self.modulation.conj()

    def solve_range_system(self, v: torch.Tensor, scale: float, shift: float) -> torch.Tensor | None:
        return self.inner.solve_range_system(v, scale, shift)

    def pseudo_inverse(self, y: torch.Tensor) -> torch.Tensor | None:
        x = self.inner.pseudo_inverse(y)
        return None if x is None else x * self.modulation.conj()

    def describe(self) -> dict:
        return self.inner.describe()


def background_phase(image: torch.Tensor, fraction: float = PHASE_LOWPASS) -> torch.Tensor:
    """The smooth phase of a complex image (..., H, W): the angle of its low-pass version, a Hann
    window over the central `fraction` of k-space along each in-plane axis."""

    def hann(n: int) -> torch.Tensor:
        k = torch.arange(n, device=image.device) - n // 2
        half = max(fraction * n / 2, 1.0)
        return torch.where(k.abs() < half, 0.5 + 0.5 * torch.cos(torch.pi * k / half), 0.0)

    h, w = image.shape[-2:]
    low = ifft2c(fft2c(image.to(torch.complex64)) * (hann(h)[:, None] * hann(w)[None, :]))
    return torch.angle(low).float()


def estimate_intensity_map(
    problem: Problem,
    data_range: tuple[float, float],
    *,
    iterations: int = 20,
    background: float | None = None,
    quantile: float = 0.995,
    demodulate: bool = False,
) -> IntensityMap:
    """The map into a prior's intensity range, from a CG reconstruction.

    With `background` None (a prior trained on images whose empty space is the range's low end),
    scale and offset put the CG estimate's 1st..99th percentiles onto data_range. With a
    `background` value (a prior trained on images divided by the `quantile` of their magnitude, the
    native-resolution priors), only a scale: that quantile of |estimate| goes to the range's high
    end and zero to `background`; this also holds for complex images (phase is kept).

    `demodulate` (complex images only) also takes the estimate's background phase out (see the
    module's notes); the percentiles are then those of the demodulated estimate's real part."""
    op = problem.operator
    estimate = conjugate_gradient(op.gram, op.adjoint(problem.y), iterations=iterations)
    source = f"CG ({iterations} iterations)"
    phase = None
    if demodulate and estimate.is_complex():
        phase = background_phase(estimate)
        estimate = estimate * torch.exp(-1j * phase)
    if background is None:
        mapping = percentile_map(estimate.real, data_range, source)
        return IntensityMap(mapping.scale, mapping.offset, mapping.source, phase)
    scale = magnitude_scale(estimate, quantile) / (data_range[1] - background)
    return IntensityMap(
        scale, -background * scale, f"{source}, |x| quantile {quantile} -> {data_range[1]}", phase
    )


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
