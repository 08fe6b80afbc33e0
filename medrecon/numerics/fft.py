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
