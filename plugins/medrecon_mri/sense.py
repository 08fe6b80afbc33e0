"""The SENSE model of multi-coil Cartesian MRI: y = M F S x."""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
import torch

from medrecon import InputError, Operator
from medrecon.numerics import centering_modulation, fftnc, ifftnc
from medrecon_mri import masks

log = logging.getLogger(__name__)

#: ESPIRiT's kernel must be at most half the calibration width (measured: a 6-wide kernel on 10 lines
#: crops the maps to zero inside the object; 4 wide on 8 lines matches the true maps to 0.999).
ESPIRIT_MIN_CALIB = 8
ESPIRIT_MAX_KERNEL = 6

#: On the CPU, coil images are processed in parts of about this size so that the FFT, the mask and
#: the coil combination run in cache (measured at 8 coils x 16 x 256^2: adjoint 89 -> 28 ms).
CPU_PART_BYTES = 16 * 2**20


class MultiCoilMRI(Operator):
    """Multi-coil MRI: image (D, H, W) or (H, W) -> k-space (D, C, H, W) or (C, H, W), complex64.

    Coil maps S multiply the image, a centered orthonormal FFT F maps each coil image to k-space
    and a Cartesian mask M keeps the sampled positions.

    - `sampling="2d"`: slice by slice, 2D FFT over (H, W); the mask is (H, W), the same for every
      slice, or (D, H, W) with `vary_per_slice`. Line masks undersample W (phase encoding) and keep
      H (readout); `poisson` undersamples both, as in 2D studies.
    - `sampling="3d"`: a 3D acquisition, 3D FFT over (D, H, W); H is the readout and the two
      phase-encode directions (D, W) are undersampled by a `poisson` or `random` mask.

    Coil maps are given (`coil_maps`, shaped like k-space), estimated by ESPIRiT from the
    measurement's fully sampled centre, or simulated as birdcage maps for studies.
    """

    #: how the image is modelled, not what was measured: free at reconstruction (a real-image
    #: bundle may be reconstructed as a complex image, as scanner data are)
    implementation_parameters = ("complex_image",)

    def __init__(
        self,
        shape: tuple[int, ...] | None = None,
        coils: int = 8,
        acceleration: float = 4.0,
        center_fraction: float = 0.08,
        mask_type: masks.MaskType = "equispaced",
        sampling: Literal["2d", "3d"] = "2d",
        vary_per_slice: bool = False,
        seed: int = 0,
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
        if sampling == "3d" and len(shape) != 3:
            raise InputError(f"3d sampling needs a volume (D, H, W), got shape {shape}")
        self.sampling = sampling
        self.slice_axis = 0 if sampling == "2d" else None
        self._fft_dims = (-2, -1) if sampling == "2d" else (-4, -2, -1)
        self.domain_shape = shape
        self.domain_dtype = torch.complex64 if complex_image else torch.float32
        self.range_dtype = torch.complex64
        self.mask_type = mask_type if mask is None else "given"
        # a given mask (a scanner's, a file's) was not made to a requested acceleration
        self.requested_acceleration = float(acceleration) if mask is None else None

        if mask is None:
            mask = make_mask(shape, mask_type, sampling, acceleration, center_fraction, vary_per_slice, seed)
        mask = np.asarray(mask, dtype=np.float32)
        valid = [shape[-2:]] + ([shape] if len(shape) == 3 else [])
        if mask.shape not in valid:
            expected = " or ".join(str(v) for v in valid)
            raise InputError(f"mask shape {mask.shape} does not match the image: expected {expected}")
        if sampling == "3d" and mask.ndim != 3:
            raise InputError(f"3d sampling needs a (D, H, W) mask, got {mask.shape}")
        self.register_buffer("mask", torch.from_numpy(np.ascontiguousarray(mask)))
        self.realised_acceleration = float(mask.size / max(mask.sum(), 1))
        self.acceleration_note = None
        gap = self.realised_acceleration / (self.requested_acceleration or self.realised_acceleration) - 1
        if self.mask_type != "given" and abs(gap) > 0.05:
            self.acceleration_note = (
                f"acceleration {self.requested_acceleration:g} was asked for, "
                f"{self.realised_acceleration:.3g} is realised: the {mask_type} mask of a "
                f"{shape[-1]}-wide image with a center_fraction of {center_fraction:g} cannot reach it"
            )
            log.warning(self.acceleration_note)

        if coil_maps is None and measurement is not None:
            coil_maps, self.coil_source = self._espirit(measurement), "espirit"
        elif coil_maps is None:
            coil_maps, self.coil_source = _birdcage(shape, coils), "birdcage"
        else:
            self.coil_source = "given"
        maps = torch.as_tensor(np.asarray(coil_maps)).to(torch.complex64)
        if maps.ndim != len(shape) + 1 or tuple(maps.shape[:-3]) + tuple(maps.shape[-2:]) != shape:
            expected = "(D, C, H, W)" if len(shape) == 3 else "(C, H, W)"
            raise InputError(
                f"coil maps shape {tuple(maps.shape)} does not match the image {shape}: expected {expected}"
            )
        self.register_buffer("coil_maps", maps.contiguous())
        self.range_shape = tuple(maps.shape)
        self._fold_centering()
        self._gram_setup()
        if measurement is not None:
            self.check_range(measurement)

    def _fold_centering(self) -> None:
        """Fold the centered FFT's shifts into the maps and the mask (even sizes): a plain FFT
        then computes it, without two full copies of the coil images per application."""
        sizes = [self.range_shape[d] for d in self._fft_dims]
        modulation = centering_modulation(sizes)
        if modulation is None:
            self._plain_fft = False
            return
        board, sign = modulation
        on_maps = board if self.sampling == "2d" else board.unsqueeze(1)  # (D, 1, H, W) for 3D
        self._plain_fft = True
        self.register_buffer("_maps_fft", (self.coil_maps * on_maps).contiguous(), persistent=False)
        self.register_buffer("_mask_fft", (self._mask * on_maps * sign).contiguous(), persistent=False)

    @property
    def _mask(self) -> torch.Tensor:
        """The mask broadcastable against k-space (..., C, H, W)."""
        return self.mask if self.mask.ndim == 2 else self.mask.unsqueeze(-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._plain_fft:
            return fftnc(x.unsqueeze(-3) * self.coil_maps, self._fft_dims) * self._mask
        if _recording(x):  # autograd (DPS-type guidance): out-of-place, whole volume
            k = torch.fft.fftn(x.unsqueeze(-3) * self._maps_fft, dim=self._fft_dims, norm="ortho")
            return k * self._mask_fft
        items = x.reshape(-1, *self.domain_shape)
        out = torch.empty(items.shape[0], *self.range_shape, dtype=torch.complex64, device=x.device)
        for item, k in zip(items, out, strict=True):
            for at_x, at_k, at_mask in self._parts(x.device):
                coil_images = item[at_x].unsqueeze(-3) * self._maps_fft[at_k]
                target = k[at_k]
                if target.is_contiguous():  # groups of slices: the FFT writes in place
                    torch.fft.fftn(coil_images, dim=self._fft_dims, norm="ortho", out=target)
                else:
                    target.copy_(torch.fft.fftn(coil_images, dim=self._fft_dims, norm="ortho"))
                target.mul_(self._mask_fft[at_mask])
        return out.reshape(*x.shape[: x.ndim - len(self.domain_shape)], *self.range_shape)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        if not self._plain_fft or _recording(y):
            maps, mask = (
                (self.coil_maps, self._mask) if not self._plain_fft else (self._maps_fft, self._mask_fft)
            )
            inverse = ifftnc if not self._plain_fft else _ifftn
            x = (maps.conj() * inverse(y * mask, self._fft_dims)).sum(dim=-3)
            return x if self.domain_dtype.is_complex else x.real
        items = y.reshape(-1, *self.range_shape)
        out = torch.zeros(items.shape[0], *self.domain_shape, dtype=torch.complex64, device=y.device)
        for k, image in zip(items, out, strict=True):
            for at_x, at_k, at_mask in self._parts(y.device):
                coil_images = torch.fft.ifftn(
                    k[at_k] * self._mask_fft[at_mask], dim=self._fft_dims, norm="ortho"
                )
                image[at_x] += coil_images.mul_(self._maps_fft[at_k].conj()).sum(dim=-3)
        out = out.reshape(*y.shape[: y.ndim - len(self.range_shape)], *self.domain_shape)
        return out if self.domain_dtype.is_complex else out.real

    def gram(self, x: torch.Tensor) -> torch.Tensor:
        """A^H A x = sum_c S_c^* F^H |M|^2 F S_c x in one pass per cache-sized part, without the
        whole k-space in between (the CG steps of DDS and DiffusionMBIR apply it several times per
        network evaluation). F^H diag(w) F is circulant, so the centering shifts cancel (any size)
        and, where the mask is the same along the readout H (line masks), the FFT along H cancels
        too: only the phase-encode axes are transformed."""
        if _recording(x):
            return self.adjoint(self.forward(x))
        items = x.reshape(-1, *self.domain_shape)
        real = not self.domain_dtype.is_complex  # then only the real part is kept, contiguous
        dtype = torch.float32 if real else torch.complex64
        out = torch.zeros(items.shape[0], *self.domain_shape, dtype=dtype, device=x.device)
        weight, dims = self._gram_weight, self._gram_dims
        for item, image in zip(items, out, strict=True):
            for at_x, at_k, at_mask in self._parts(x.device):
                maps = self.coil_maps[at_k]
                k = torch.fft.fftn(item[at_x].unsqueeze(-3) * maps, dim=dims, norm="ortho")
                coil_images = torch.fft.ifftn(k.mul_(weight[at_mask]), dim=dims, norm="ortho")
                summed = coil_images.mul_(maps.conj()).sum(dim=-3)
                image[at_x] += summed.real if real else summed
        return out.reshape(x.shape)

    def _gram_setup(self) -> None:
        """|M|^2 in uncentered FFT order, and the FFT axes the Gram operator needs."""
        weight = self._mask**2
        dims = self._fft_dims
        if bool((weight == weight[..., :1, :]).all()):  # the readout H is fully sampled
            weight, dims = weight[..., :1, :], tuple(d for d in dims if d != -2)
        weight = torch.fft.ifftshift(weight, dim=dims)
        self._gram_dims = dims
        self.register_buffer("_gram_weight", weight.contiguous(), persistent=False)

    def _parts(self, device: torch.device) -> list[tuple]:
        """Index triples (image, k-space, mask) splitting one application into cache-sized parts:
        groups of slices for 2D sampling, groups of coils for 3D sampling (its FFT spans D)."""
        whole = (Ellipsis,)
        if len(self.domain_shape) == 2 or device.type != "cpu":
            return [(whole, whole, whole)]
        depth, coils, height, width = self.range_shape
        if self.sampling == "2d":
            step = max(1, CPU_PART_BYTES // (coils * height * width * 8))
            per_slice_mask = self.mask.ndim == 3
            return [
                ((s,), (s,), (s,) if per_slice_mask else whole)
                for s in (slice(i, i + step) for i in range(0, depth, step))
            ]
        step = max(1, CPU_PART_BYTES // (depth * height * width * 8))
        return [(whole, (slice(None), c), whole) for c in (slice(i, i + step) for i in range(0, coils, step))]

    def simulate(self, x: torch.Tensor, noise_std: float, seed: int = 0) -> torch.Tensor:
        """Noisy k-space; unsampled positions stay exactly zero, as on a scanner."""
        return super().simulate(x, noise_std, seed) * self._mask

    def describe(self) -> dict[str, Any]:
        return {
            "sampling": self.sampling,
            "mask_type": self.mask_type,
            **(
                {"acceleration_requested": self.requested_acceleration}
                if self.requested_acceleration is not None
                else {}
            ),
            "acceleration_realised": round(self.realised_acceleration, 4),
            "coils": int(self.coil_maps.shape[-3]),
            "coil_maps": self.coil_source,
            **({"acceleration_note": self.acceleration_note} if self.acceleration_note else {}),
        }

    def arrays(self) -> dict[str, torch.Tensor]:
        return {"mask": self.mask, "coil_maps": self.coil_maps}

    def _espirit(self, measurement: torch.Tensor) -> np.ndarray:
        """ESPIRiT coil maps from the measurement's calibration region (sigpy EspiritCalib)."""
        from sigpy.mri.app import EspiritCalib

        ksp = measurement.detach().cpu().numpy()
        full = self.mask.cpu().numpy()
        if full.ndim == 2:
            calib = _central_run(full[full.shape[0] // 2] > 0)
        else:
            d, h, w = (n // 2 for n in full.shape)
            calib = min(_central_run(full[d, h] > 0), _central_run(full[:, h, w] > 0))
        if calib < ESPIRIT_MIN_CALIB:
            raise InputError(
                f"ESPIRiT needs at least {ESPIRIT_MIN_CALIB} fully sampled centre lines, the mask has "
                f"{calib}; give coil_maps or a larger center_fraction"
            )
        kernel = min(ESPIRIT_MAX_KERNEL, calib // 2)
        log.info("estimating ESPIRiT coil maps from %d calibration lines, kernel %d", calib, kernel)

        def calibrate(k: np.ndarray) -> np.ndarray:
            if not np.any(k):  # ESPIRiT of an empty slice is 0/0: no signal, no coil sensitivity
                return np.zeros_like(k)
            return EspiritCalib(k, calib_width=calib, kernel_width=kernel, show_pbar=False).run()

        if self.sampling == "3d":  # one 3D calibration: (D, C, H, W) -> (C, D, H, W) and back
            return calibrate(ksp.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
        if ksp.ndim == 3:
            return calibrate(ksp)
        return np.stack([calibrate(k) for k in ksp])


def _recording(t: torch.Tensor) -> bool:
    """Whether autograd records operations on t (in-place parts would break its graph)."""
    return torch.is_grad_enabled() and t.requires_grad


def _ifftn(k: torch.Tensor, dims) -> torch.Tensor:
    return torch.fft.ifftn(k, dim=dims, norm="ortho")


def make_mask(
    shape: tuple[int, ...],
    mask_type: str,
    sampling: str,
    acceleration: float,
    center_fraction: float,
    vary_per_slice: bool,
    seed: int,
) -> np.ndarray:
    """The sampling mask mri-multicoil makes for a request: (H, W) for 2d sampling ((D, H, W) with
    `vary_per_slice`), (D, H, W) for 3d."""
    height, width = shape[-2:]
    if sampling == "3d":
        if vary_per_slice:
            raise InputError("vary_per_slice applies to 2d sampling; a 3d acquisition has one mask")
        depth = shape[0]
        if mask_type == "poisson":
            plane = masks.poisson_mask((depth, width), acceleration, center_fraction, seed)
        elif mask_type == "random":
            plane = masks.random_mask_2d((depth, width), acceleration, center_fraction, seed)
        else:
            raise InputError(f"3d sampling needs mask_type 'poisson' or 'random', got '{mask_type}'")
        return np.broadcast_to(plane[:, None, :], shape)  # the readout H is fully sampled

    def one(offset: int) -> np.ndarray:
        if mask_type == "equispaced":
            cols = masks.equispaced_mask(width, acceleration, center_fraction, offset=offset)
        elif mask_type == "random":
            cols = masks.random_mask(width, acceleration, center_fraction, seed=seed + offset)
        elif mask_type == "poisson":
            return masks.poisson_mask((height, width), acceleration, center_fraction, seed=seed + offset)
        else:
            raise InputError(f"unknown mask_type '{mask_type}': expected equispaced, random or poisson")
        return np.broadcast_to(cols[None, :], (height, width))

    if vary_per_slice and len(shape) == 3:
        return np.stack([one(d) for d in range(shape[0])])
    return one(0)


def _central_run(sampled: np.ndarray) -> int:
    """Width of the run of sampled positions around the centre (the calibration region)."""
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
    """Simulated birdcage coil maps, normalised to a sum of squares of one: (D, C, H, W) or (C, H, W)."""
    from sigpy.mri import birdcage_maps

    if coils < 1:
        raise InputError(f"coils must be >= 1, got {coils}")
    maps = birdcage_maps((coils, *shape)).astype(np.complex64)
    maps /= np.sqrt((np.abs(maps) ** 2).sum(axis=0, keepdims=True))
    return maps.transpose(1, 0, 2, 3).copy() if len(shape) == 3 else maps
