"""Inpainting: only some pixels are observed, y = M x (unobserved positions are 0 in y)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

from medrecon import InputError, Operator, SingularDecomposition

MaskType = Literal["random", "lines", "boxes"]


class Inpainting(Operator):
    """Observe a subset of the pixels of an image (H, W) or volume (D, H, W): y = M x, range = domain.

    Masks (`mask_type`), each missing about `missing` of the pixels: `random` pixels, `lines`
    (whole rows, as in missing detector or k-space lines) or `boxes` (square holes of `box` pixels).
    With `per_slice` (volumes) every slice has its own mask (2D problems, slice-separable); without,
    one 3D mask covers the volume (random pixels or boxes in 3D; lines are whole (D, W) planes of
    rows). A given `mask` (1 = observed) is used as it is. A A^H = M is diagonal, so the samplers get
    an exact solve of (s A A^H + c I) z = v and the exact pseudo-inverse A^+ = M.
    """

    def __init__(
        self,
        shape: tuple[int, ...] | None = None,
        mask_type: MaskType = "random",
        missing: float = 0.7,
        per_slice: bool = True,
        box: int = 8,
        seed: int = 0,
        mask: np.ndarray | None = None,
        measurement: torch.Tensor | None = None,
    ):
        super().__init__()
        if shape is None:
            if measurement is None:
                raise InputError("inpainting needs the image shape or a measurement to take it from")
            shape = tuple(measurement.shape)
        shape = tuple(int(s) for s in shape)
        if len(shape) not in (2, 3) or min(shape) < 1:
            raise InputError(f"inpainting image shape must be (H, W) or (D, H, W), got {shape}")
        if mask is None:
            if not 0 <= missing < 1:
                raise InputError(f"missing must be a fraction in [0, 1), got {missing}")
            if mask_type not in ("random", "lines", "boxes"):
                raise InputError(f"unknown mask_type {mask_type!r}: expected random, lines or boxes")
            if box < 1:
                raise InputError(f"box must be >= 1 pixel, got {box}")
            mask = _make_mask(shape, mask_type, missing, per_slice, box, seed)
        mask = np.asarray(mask, dtype=np.float32)
        if mask.shape != shape:
            raise InputError(f"mask shape {mask.shape} does not match the image: expected {shape}")
        if not np.isin(mask, (0.0, 1.0)).all():
            raise InputError("mask must hold only 0 (missing) and 1 (observed)")
        self.mask_type = mask_type if mask is None else "given"
        self.slice_axis = 0 if len(shape) == 3 and (per_slice or mask_type == "given") else None
        self.domain_shape = self.range_shape = shape
        self.register_buffer("mask", torch.from_numpy(np.ascontiguousarray(mask)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.mask

    def gram(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask

    def svd(self) -> SingularDecomposition:
        """A = M = I diag(mask) I: the exact solve of (scale M + shift I) and the pseudo-inverse
        (y on the observed pixels) follow from it, pixel by pixel."""
        return SingularDecomposition(self.mask, v_h=_same, v=_same, u_h=_same, u=_same)

    def simulate(self, x: torch.Tensor, noise_std: float, seed: int = 0) -> torch.Tensor:
        """Noisy observed pixels; missing ones are exactly zero."""
        return super().simulate(x, noise_std, seed) * self.mask

    def describe(self) -> dict[str, Any]:
        return {
            "mask_type": self.mask_type,
            "observed_fraction": round(float(self.mask.mean()), 4),
            "per_slice": self.slice_axis == 0,
        }

    def arrays(self) -> dict[str, torch.Tensor]:
        return {"mask": self.mask}


def _same(x: torch.Tensor) -> torch.Tensor:
    return x


def _make_mask(shape, mask_type: str, missing: float, per_slice: bool, box: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    stacked = len(shape) == 3 and per_slice  # one 2D mask per slice, stacked (one slice too)
    planes = [shape[1:]] * shape[0] if stacked else [shape]
    masks = []
    for plane in planes:
        if mask_type == "random":
            masks.append(rng.random(plane) >= missing)
        elif mask_type == "lines":
            rows = rng.random(plane[-2]) >= missing
            masks.append(np.broadcast_to(rows[:, None] if len(plane) == 2 else rows[None, :, None], plane))
        else:
            masks.append(_boxes(plane, missing, box, rng))
    mask = np.stack(masks) if stacked else masks[0]
    return mask.astype(np.float32)


def _boxes(plane: tuple[int, ...], missing: float, box: int, rng: np.random.Generator) -> np.ndarray:
    """Random square (cubic) holes of side `box` until about `missing` of the pixels are gone."""
    observed = np.ones(plane, dtype=bool)
    size = int(np.prod(plane))
    for _ in range(100 * size // box ** len(plane) + 100):
        if 1 - observed.mean() >= missing:
            break
        corner = [int(rng.integers(0, max(n - box, 0) + 1)) for n in plane]
        observed[tuple(slice(c, c + box) for c in corner)] = False
    return observed
