"""The SENSE model of multi-coil Cartesian MRI: y = M F S x."""

from __future__ import annotations

import logging

import numpy as np
import torch

from medrecon import InputError, Operator
from medrecon.numerics import fft2c, ifft2c
from medrecon_mri.masks import equispaced_mask

log = logging.getLogger(__name__)

#: ESPIRiT's kernel must be at most half the calibration width (measured: a 6-wide kernel on 10 lines
#: crops the maps to zero inside the object; 4 wide on 8 lines matches the true maps to 0.999).
ESPIRIT_MIN_CALIB = 8
ESPIRIT_MAX_KERNEL = 6


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
                raise InputError("mri-multicoil needs the image shape or a measurement to take it from")
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
            raise InputError(f"mask shape {mask.shape} does not match the image: expected {(height, width)}")
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

    def simulate(self, x: torch.Tensor, noise_std: float, seed: int = 0) -> torch.Tensor:
        """Noisy k-space; unsampled positions stay exactly zero, as on a scanner."""
        return super().simulate(x, noise_std, seed) * self.mask

    def arrays(self) -> dict[str, torch.Tensor]:
        return {"mask": self.mask, "coil_maps": self.coil_maps}

    def _espirit(self, measurement: torch.Tensor) -> np.ndarray:
        """ESPIRiT coil maps from the measurement's calibration region (sigpy EspiritCalib)."""
        from sigpy.mri.app import EspiritCalib

        ksp = measurement.detach().cpu().numpy()
        center = self.mask[self.mask.shape[0] // 2].cpu().numpy() > 0
        calib = _central_run(center)
        if calib < ESPIRIT_MIN_CALIB:
            raise InputError(
                f"ESPIRiT needs at least {ESPIRIT_MIN_CALIB} fully sampled centre lines, the mask has "
                f"{calib}; give coil_maps or a larger center_fraction"
            )
        kernel = min(ESPIRIT_MAX_KERNEL, calib // 2)
        log.info("estimating ESPIRiT coil maps from %d calibration lines, kernel %d", calib, kernel)
        slices = ksp[None] if ksp.ndim == 3 else ksp
        maps = []
        for d, k in enumerate(slices):
            if not np.any(k):  # ESPIRiT of an empty slice is 0/0: no signal, no coil sensitivity
                log.info("slice %d holds no signal: its coil maps are set to zero", d)
                maps.append(np.zeros_like(k))
                continue
            maps.append(EspiritCalib(k, calib_width=calib, kernel_width=kernel, show_pbar=False).run())
        maps = np.stack(maps)
        return maps[0] if ksp.ndim == 3 else maps


def _central_run(sampled: np.ndarray) -> int:
    """Width of the run of sampled columns around the centre (the ACS region)."""
    c = len(sampled) // 2
    if not sampled[c]:
        raise InputError("the mask does not sample the k-space centre: ESPIRiT needs calibration lines")
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
