"""The SENSE model of multi-coil Cartesian MRI: y = M F S x."""

from __future__ import annotations

import logging

import numpy as np
import torch

from medrecon import InputError, Operator
from medrecon.numerics import fft2c, ifft2c
from medrecon_mri.masks import equispaced_mask

log = logging.getLogger(__name__)


class MultiCoilMRI(Operator):
    """Multi-coil MRI: image (D, H, W) or (H, W) -> k-space (D, C, H, W) or (C, H, W), complex64.

    Coil maps S multiply the image, a centered orthonormal 2D FFT F maps each coil image to k-space
    and a Cartesian mask M keeps the sampled lines (phase encoding along W, 1D mask shared by all
    slices). Coil maps are given (`coil_maps`, (D, C, H, W) or (C, H, W)), estimated by ESPIRiT from
    the measurement's fully sampled centre, or simulated as birdcage maps for studies.
    """

    slice_axis = 0

    def __init__(
        self,
        shape: tuple[int, ...] | None = None,
        coils: int = 8,
        acceleration: float = 4.0,
        center_fraction: float = 0.08,
        complex_image: bool = False,
        coil_maps: np.ndarray | None = None,
        mask: np.ndarray | None = None,
        measurement: torch.Tensor | None = None,
    ):
        super().__init__()
        if shape is None:
            if measurement is None:
                raise InputError(
                    "mri-multicoil needs the image shape or a measurement to take it from"
                )
            m = tuple(measurement.shape)
            shape = (m[0], *m[2:]) if len(m) == 4 else tuple(m[1:])
        shape = tuple(int(s) for s in shape)
        if len(shape) not in (2, 3) or min(shape) < 1:
            raise InputError(f"mri-multicoil image shape must be (H, W) or (D, H, W), got {shape}")
        self.domain_shape = shape
        self.domain_dtype = torch.complex64 if complex_image else torch.float32
        self.range_dtype = torch.complex64
        height, width = shape[-2:]

        if mask is None:
            cols = equispaced_mask(width, acceleration, center_fraction)
            mask = np.broadcast_to(cols, (height, width))
        mask = np.asarray(mask, dtype=np.float32)
        if mask.shape != (height, width):
            raise InputError(
                f"mask shape {mask.shape} does not match the image: expected {(height, width)}"
            )
        self.register_buffer("mask", torch.from_numpy(np.ascontiguousarray(mask)))
        self.realised_acceleration = float(mask.size / max(mask.sum(), 1))

        if coil_maps is None and measurement is not None:
            coil_maps = self._espirit(measurement)
        if coil_maps is None:
            coil_maps = _birdcage(shape, coils)
        maps = torch.as_tensor(np.asarray(coil_maps)).to(torch.complex64)
        expected = (*shape[:-2], maps.shape[-3], height, width) if len(shape) == 3 else None
        if len(shape) == 3 and tuple(maps.shape) != expected:
            raise InputError(
                f"coil maps shape {tuple(maps.shape)} does not match the image {shape}: "
                f"expected (D, C, H, W) = {expected}"
            )
        if len(shape) == 2 and (maps.ndim != 3 or tuple(maps.shape[-2:]) != shape):
            raise InputError(
                f"coil maps shape {tuple(maps.shape)} does not match the image {shape}: "
                f"expected (C, H, W) = (C, {height}, {width})"
            )
        self.register_buffer("coil_maps", maps.contiguous())
        self.range_shape = tuple(maps.shape)
        if measurement is not None:
            self.check_range(measurement)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coil_images = x.to(torch.complex64).unsqueeze(-3) * self.coil_maps
        return fft2c(coil_images) * self.mask

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        x = (self.coil_maps.conj() * ifft2c(y * self.mask)).sum(dim=-3)
        return x if self.domain_dtype.is_complex else x.real

    def gram(self, x: torch.Tensor) -> torch.Tensor:
        return self.adjoint(self.forward(x))

    def arrays(self) -> dict[str, torch.Tensor]:
        return {"mask": self.mask, "coil_maps": self.coil_maps}

    def _espirit(self, measurement: torch.Tensor) -> np.ndarray:
        """ESPIRiT coil maps from the measurement's calibration region (sigpy EspiritCalib)."""
        from sigpy.mri.app import EspiritCalib

        ksp = measurement.detach().cpu().numpy()
        center = self.mask[self.mask.shape[0] // 2].cpu().numpy() > 0
        calib = _central_run(center)
        log.info("estimating ESPIRiT coil maps from %d calibration lines", calib)
        if ksp.ndim == 3:
            return EspiritCalib(ksp, calib_width=calib, show_pbar=False).run()
        return np.stack([EspiritCalib(k, calib_width=calib, show_pbar=False).run() for k in ksp])


def _central_run(sampled: np.ndarray) -> int:
    """Width of the run of sampled columns around the centre (the ACS region)."""
    c = len(sampled) // 2
    if not sampled[c]:
        raise InputError(
            "the mask does not sample the k-space centre: ESPIRiT needs calibration lines"
        )
    lo, hi = c, c
    while lo > 0 and sampled[lo - 1]:
        lo -= 1
    while hi < len(sampled) - 1 and sampled[hi + 1]:
        hi += 1
    return hi - lo + 1


def _birdcage(shape: tuple[int, ...], coils: int) -> np.ndarray:
    """Simulated birdcage coil maps, normalised to a sum of squares of one, (D, C, H, W)/(C, H, W)."""
    from sigpy.mri import birdcage_maps

    if coils < 1:
        raise InputError(f"coils must be >= 1, got {coils}")
    maps = birdcage_maps((coils, *shape[-2:])).astype(np.complex64)
    maps /= np.sqrt((np.abs(maps) ** 2).sum(axis=0, keepdims=True))
    if len(shape) == 3:
        maps = np.broadcast_to(maps[None], (shape[0], *maps.shape)).copy()
    return maps
