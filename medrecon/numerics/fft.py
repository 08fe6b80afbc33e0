"""Centered, orthonormal FFTs (the k-space convention of MRI): DC in the middle, unitary."""

from __future__ import annotations

from collections.abc import Sequence

import torch

_2D = (-2, -1)


def fftnc(x: torch.Tensor, dims: Sequence[int]) -> torch.Tensor:
    """Centered orthonormal FFT over `dims`: DC at index n // 2, ||fftnc(x)|| = ||x||."""
    x = torch.fft.ifftshift(x, dim=tuple(dims))
    return torch.fft.fftshift(torch.fft.fftn(x, dim=tuple(dims), norm="ortho"), dim=tuple(dims))


def ifftnc(k: torch.Tensor, dims: Sequence[int]) -> torch.Tensor:
    """Inverse (and adjoint) of `fftnc`."""
    k = torch.fft.ifftshift(k, dim=tuple(dims))
    return torch.fft.fftshift(torch.fft.ifftn(k, dim=tuple(dims), norm="ortho"), dim=tuple(dims))


def fft2c(x: torch.Tensor) -> torch.Tensor:
    """Centered orthonormal 2D FFT over the last two axes."""
    return fftnc(x, _2D)


def ifft2c(k: torch.Tensor) -> torch.Tensor:
    """Inverse of `fft2c`."""
    return ifftnc(k, _2D)


def centering_modulation(sizes: Sequence[int]) -> tuple[torch.Tensor, float] | None:
    """For even sizes, the centered FFT without the two shift copies: fftnc(x) = sign * D F(D x).

    With n = 2s along an axis, ifftshift and fftshift are modulations in the other domain, so
    fftnc(x)[k] = (-1)^s (-1)^k F((-1)^j x[j])[k] per axis. Returns (D, sign), D the +-1
    checkerboard of shape `sizes`, to be folded into multipliers applied anyway (coil maps, a mask);
    None if any size is odd (then use fftnc).
    """
    if any(n % 2 for n in sizes):
        return None
    board = torch.ones(())
    for axis, n in enumerate(sizes):
        signs = 1.0 - 2.0 * (torch.arange(n) % 2)
        board = board.unsqueeze(-1) * signs.reshape((1,) * axis + (n,))
    sign = float((-1) ** (sum(n // 2 for n in sizes) % 2))
    return board, sign
