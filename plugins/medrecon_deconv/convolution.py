"""Convolution by a blur kernel that may be unknown: y = k * x, by FFT."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

from medrecon import BlindOperator, InputError, SingularDecomposition
from medrecon_deconv.kernels import gaussian_kernel, motion_kernel

Boundary = Literal["zero", "periodic"]


class Convolution(BlindOperator):
    """Blur by a 2D kernel (each slice of a volume) or a 3D kernel (the whole volume).

    Boundary handling:
    - "zero": linear convolution of the image extended by zeros, cropped to the image ("same"
      size, as scipy.signal.fftconvolve(mode="same")); the adjoint is the matching correlation.
    - "periodic": circular convolution (the image wraps around).

    The kernel (odd size, centre at size // 2) is a parameter of the operator: `forward(x, kernel)`
    blurs with the given kernel, `forward(x)` with the operator's own. `adjoint_kernel(y, x)` is
    the adjoint in the kernel, i.e. the gradient of <k * x, y> with respect to k.
    """

    def __init__(
        self,
        shape: tuple[int, ...] | None = None,
        kernel_type: Literal["motion", "gaussian"] = "motion",
        kernel_size: int = 9,
        kernel_dims: Literal[2, 3] = 2,
        sigma: tuple[float, ...] = (2.0, 1.0),
        angle: float = 30.0,
        intensity: float = 0.5,
        boundary: Boundary = "zero",
        seed: int = 0,
        kernel: np.ndarray | None = None,
        measurement: torch.Tensor | None = None,
    ):
        super().__init__()
        if shape is None:
            if measurement is None:
                raise InputError("blind-deconv needs the image shape or a measurement to take it from")
            shape = tuple(measurement.shape)
        shape = tuple(int(s) for s in shape)
        if len(shape) not in (2, 3):
            raise InputError(f"blind-deconv image shape must be (H, W) or (D, H, W), got {shape}")
        if kernel is None:
            if kernel_dims == 3 and len(shape) != 3:
                raise InputError("a 3D kernel needs a volume (D, H, W)")
            if kernel_type == "gaussian":
                sig = tuple(sigma) if len(sigma) == kernel_dims else tuple(sigma[:1]) * kernel_dims
                kernel = gaussian_kernel(kernel_size, sig, angle)
            else:
                kernel = motion_kernel(kernel_size, kernel_dims, intensity, seed)
        kernel = np.asarray(kernel, dtype=np.float32)
        if kernel.ndim not in (2, 3) or kernel.ndim > len(shape):
            raise InputError(f"kernel of shape {kernel.shape} does not fit images of shape {shape}")
        if any(k % 2 == 0 for k in kernel.shape):
            raise InputError(f"kernel sides must be odd (centre at size // 2), got {kernel.shape}")
        if any(k > s for k, s in zip(kernel.shape, shape[-kernel.ndim :], strict=True)):
            raise InputError(
                f"kernel {kernel.shape} is larger than the image {shape[-kernel.ndim :]}; "
                "use a kernel no larger than the image"
            )
        if boundary not in ("zero", "periodic"):
            raise InputError(f"boundary must be 'zero' or 'periodic', got {boundary!r}")
        self.boundary = boundary
        self.kernel_type = kernel_type
        self.domain_shape = self.range_shape = shape
        self.slice_axis = 0 if (kernel.ndim == 2 and len(shape) == 3) else None
        self.register_buffer("kernel", torch.from_numpy(kernel))
        k_shape = kernel.shape
        self._dims = tuple(range(-kernel.ndim, 0))
        image = shape[-kernel.ndim :]
        # FFT grid: the full linear convolution for "zero", the image itself for "periodic"
        self._grid = (
            image if boundary == "periodic" else tuple(s + k - 1 for s, k in zip(image, k_shape, strict=True))
        )
        self._image = image
        self._k_shape = k_shape
        if measurement is not None:
            self.check_range(measurement)

    @property
    def params_shape(self) -> tuple[int, ...]:
        """Shape of the unknown parameter: the kernel."""
        return self._k_shape

    # --- FFT helpers ------------------------------------------------------------------------
    def _periodic_kernel(self, kernel: torch.Tensor) -> torch.Tensor:
        """The kernel on the image grid, its centre on index 0."""
        padded = torch.zeros(
            *kernel.shape[: -len(self._dims)], *self._grid, dtype=kernel.dtype, device=kernel.device
        )
        padded[(..., *(slice(0, k) for k in self._k_shape))] = kernel
        return torch.roll(padded, [-(k // 2) for k in self._k_shape], dims=self._dims)

    def _kernel_spectrum(self, kernel: torch.Tensor) -> torch.Tensor:
        if self.boundary == "periodic":
            return torch.fft.rfftn(self._periodic_kernel(kernel), dim=self._dims)
        return torch.fft.rfftn(kernel, s=self._grid, dim=self._dims)

    def _crop(self, full: torch.Tensor, offsets, sizes) -> torch.Tensor:
        return full[(..., *(slice(o, o + n) for o, n in zip(offsets, sizes, strict=True)))]

    def _embed(self, y: torch.Tensor) -> torch.Tensor:
        """y placed where the 'same' crop took it from, zeros elsewhere (adjoint of the crop)."""
        full = torch.zeros(*y.shape[: -len(self._dims)], *self._grid, dtype=y.dtype, device=y.device)
        full[(..., *(slice(k // 2, k // 2 + n) for k, n in zip(self._k_shape, self._image, strict=True)))] = y
        return full

    # --- the operator -------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, params: torch.Tensor | None = None) -> torch.Tensor:
        kernel = self.kernel if params is None else params
        spectrum = torch.fft.rfftn(x, s=self._grid, dim=self._dims) * self._kernel_spectrum(kernel)
        full = torch.fft.irfftn(spectrum, s=self._grid, dim=self._dims)
        if self.boundary == "periodic":
            return full
        return self._crop(full, [k // 2 for k in self._k_shape], self._image)

    def adjoint(self, y: torch.Tensor, params: torch.Tensor | None = None) -> torch.Tensor:
        kernel = self.kernel if params is None else params
        padded = y if self.boundary == "periodic" else self._embed(y)
        spectrum = (
            torch.fft.rfftn(padded, s=self._grid, dim=self._dims) * self._kernel_spectrum(kernel).conj()
        )
        full = torch.fft.irfftn(spectrum, s=self._grid, dim=self._dims)
        return full if self.boundary == "periodic" else self._crop(full, [0] * len(self._dims), self._image)

    def adjoint_kernel(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Adjoint of k -> k * x at the image x: the gradient in the kernel of <k * x, y>.

        A batch of images gives the sum over the batch (and over slices for a 2D kernel).
        """
        padded = y if self.boundary == "periodic" else self._embed(y)
        spectrum = (
            torch.fft.rfftn(padded, s=self._grid, dim=self._dims)
            * torch.fft.rfftn(x, s=self._grid, dim=self._dims).conj()
        )
        corr = torch.fft.irfftn(spectrum, s=self._grid, dim=self._dims)
        if self.boundary == "periodic":  # lags -k//2 .. k//2 sit around index 0
            corr = torch.roll(corr, [k // 2 for k in self._k_shape], dims=self._dims)
        out = self._crop(corr, [0] * len(self._dims), self._k_shape)
        return out.reshape(-1, *self._k_shape).sum(dim=0)

    def solve_range_system(self, v: torch.Tensor, scale: float, shift: float) -> torch.Tensor | None:
        """Exact for the periodic boundary, where A A^H is diagonal in the DFT basis; else None."""
        if self.boundary != "periodic":
            return None
        spectrum = self._kernel_spectrum(self.kernel)
        v_hat = torch.fft.rfftn(v, s=self._grid, dim=self._dims)
        return torch.fft.irfftn(v_hat / (scale * spectrum.abs() ** 2 + shift), s=self._grid, dim=self._dims)

    def svd(self) -> SingularDecomposition | None:
        """For the periodic boundary, A = F^H diag(k_hat) F with the unitary DFT F: V = F^H and
        U = F^H diag(phase of k_hat), singular values |k_hat| (on real images: `v` and `u` return
        the real part). None for the zero boundary."""
        if self.boundary != "periodic":
            return None
        full = torch.fft.fftn(self._periodic_kernel(self.kernel), dim=self._dims)
        s = full.abs()
        phase = torch.where(s > 0, full / s.clamp_min(1e-30), torch.ones_like(full))
        dims = self._dims

        def v_h(x):
            return torch.fft.fftn(x, dim=dims, norm="ortho")

        def v(c):
            return torch.fft.ifftn(c, dim=dims, norm="ortho").real

        def u_h(y):
            return torch.fft.fftn(y, dim=dims, norm="ortho") * phase.conj()

        def u(c):
            return torch.fft.ifftn(c * phase, dim=dims, norm="ortho").real

        return SingularDecomposition(s, v_h=v_h, v=v, u_h=u_h, u=u)

    def pseudo_inverse(self, y: torch.Tensor) -> torch.Tensor | None:
        """None, although the periodic blur has an SVD: its pseudo-inverse divides by singular values
        near zero and amplifies the noise without bound, so projection-based samplers (MCG, CCDF)
        take CG steps instead."""
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "boundary": self.boundary,
            "kernel_shape": list(self._k_shape),
            "kernel": self.kernel_type,
            "per_slice": self.slice_axis == 0,
        }

    def arrays(self) -> dict[str, torch.Tensor]:
        return {"kernel": self.kernel}
