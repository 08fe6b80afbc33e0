"""Downsampling by an integer factor: the forward model of super-resolution."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch

from medrecon import InputError, Operator


class Downsample(Operator):
    """Reduce each slice (`dims` = 2) or the whole volume (`dims` = 3) by an integer `factor`.

    - `method = "block"`: the mean of each factor x factor (x factor) block (a detector that
      integrates over large pixels). A A^H = I / factor^dims.
    - `method = "gaussian"`: a periodic Gaussian low-pass (std `sigma` input pixels, default
      factor / 2, the usual antialiasing choice) then keeping every factor-th sample. A A^H is then
      circulant on the low-resolution grid, diagonal in its DFT basis.
    Both give samplers an exact solve of (s A A^H + c I) z = v and the exact pseudo-inverse
    A^H (A A^H)^-1. Sizes must be multiples of the factor (on the downsampled axes).
    """

    def __init__(
        self,
        shape: tuple[int, ...] | None = None,
        factor: int = 4,
        method: Literal["block", "gaussian"] = "block",
        dims: Literal[2, 3] = 2,
        sigma: float | None = None,
        measurement: torch.Tensor | None = None,
    ):
        super().__init__()
        if shape is None:
            raise InputError("downsample needs the image shape (H, W) or (D, H, W)")
        shape = tuple(int(s) for s in shape)
        if len(shape) not in (2, 3):
            raise InputError(f"downsample image shape must be (H, W) or (D, H, W), got {shape}")
        if dims not in (2, 3) or dims > len(shape):
            raise InputError(f"dims must be 2 (per slice) or 3 (a volume's three axes), got {dims}")
        if factor < 1:
            raise InputError(f"factor must be an integer >= 1, got {factor}")
        if method not in ("block", "gaussian"):
            raise InputError(f"method must be 'block' or 'gaussian', got {method!r}")
        axes = shape[-dims:]
        if any(n < factor for n in axes):
            raise InputError(
                f"image size {axes} is smaller than the downsampling factor {factor} on the "
                f"downsampled axes: the result would be empty; use a factor <= {min(axes)}"
            )
        if any(n % factor for n in axes):
            cropped = tuple(n - n % factor for n in axes)
            padded = tuple(-(-n // factor) * factor for n in axes)
            raise InputError(
                f"image size {axes} is not a multiple of factor {factor} on the downsampled axes: "
                f"crop to {cropped} or pad to {padded}"
            )
        self.factor, self.method, self.dims = int(factor), method, int(dims)
        self.sigma = factor / 2 if sigma is None else float(sigma)
        if self.sigma <= 0:
            raise InputError(f"sigma must be > 0 pixels, got {sigma}")
        self.slice_axis = 0 if dims == 2 and len(shape) == 3 else None
        self.domain_shape = shape
        self.range_shape = (*shape[:-dims], *(n // factor for n in axes))
        self._axes = tuple(range(-dims, 0))
        if method == "gaussian":
            self.register_buffer("_transfer", _gaussian_transfer(axes, self.sigma), persistent=False)
            self.register_buffer("_aliased", _aliased_power(self._transfer, factor), persistent=False)

    # -- block average -------------------------------------------------------------------------

    def _block_mean(self, x: torch.Tensor) -> torch.Tensor:
        f = self.factor
        for axis in self._axes:
            x = x.unflatten(axis, (-1, f)).mean(dim=axis)
        return x

    def _block_spread(self, y: torch.Tensor) -> torch.Tensor:
        f = self.factor
        for axis in self._axes:
            y = y.repeat_interleave(f, dim=axis)
        return y / f**self.dims

    # -- operator -----------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.method == "block":
            return self._block_mean(x)
        blurred = torch.fft.ifftn(torch.fft.fftn(x, dim=self._axes) * self._transfer, dim=self._axes).real
        return blurred[self._decimation()]

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        if self.method == "block":
            return self._block_spread(y)
        up = torch.zeros(
            (*y.shape[: y.ndim - self.dims], *self.domain_shape[-self.dims :]), dtype=y.dtype, device=y.device
        )
        up[self._decimation()] = y
        return torch.fft.ifftn(torch.fft.fftn(up, dim=self._axes) * self._transfer, dim=self._axes).real

    def _decimation(self) -> tuple:
        return (Ellipsis, *(slice(None, None, self.factor) for _ in self._axes))

    def _range_eigenvalues(self) -> torch.Tensor | float:
        """The spectrum of A A^H on the low-resolution grid (a number for block averaging)."""
        return 1.0 / self.factor**self.dims if self.method == "block" else self._aliased

    def solve_range_system(self, v: torch.Tensor, scale: float, shift: float) -> torch.Tensor | None:
        """(scale A A^H + shift I)^-1 v exactly: a scalar for blocks, a DFT-diagonal for Gaussians."""
        eig = self._range_eigenvalues()
        if self.method == "block":
            return v / (scale * eig + shift)
        v_hat = torch.fft.fftn(v, dim=self._axes)
        return torch.fft.ifftn(v_hat / (scale * eig + shift), dim=self._axes).real

    def pseudo_inverse(self, y: torch.Tensor) -> torch.Tensor:
        """A^H (A A^H)^-1 y: the minimum-norm image that reproduces y exactly."""
        eig = self._range_eigenvalues()
        if self.method == "block":
            return self.adjoint(y / eig)
        y_hat = torch.fft.fftn(y, dim=self._axes)
        return self.adjoint(torch.fft.ifftn(y_hat / eig.clamp_min(1e-12), dim=self._axes).real)

    def describe(self) -> dict[str, Any]:
        return {"factor": self.factor, "method": self.method, "dims": self.dims, "sigma": self.sigma}


def _gaussian_transfer(axes: tuple[int, ...], sigma: float) -> torch.Tensor:
    """DFT of a periodic Gaussian of std `sigma` pixels on a grid of `axes` (real, unit DC)."""
    grids = torch.meshgrid(*(torch.fft.fftfreq(n, dtype=torch.float64) for n in axes), indexing="ij")
    radius2 = sum(g**2 for g in grids)
    return torch.exp(-2 * math.pi**2 * sigma**2 * radius2).float()


def _aliased_power(transfer: torch.Tensor, factor: int) -> torch.Tensor:
    """Eigenvalues of S H H^T S^T on the low-resolution grid: |H|^2 folded by the decimation,
    (1 / factor^d) sum over the factor^d aliases of each low-resolution frequency."""
    power = transfer.double() ** 2
    for axis in range(power.ndim):
        n = power.shape[axis]
        power = power.unflatten(axis, (factor, n // factor)).mean(dim=axis)
    return power.float()
