"""Total variation as a proximal prior: 2D, 3D, or along z only (for slice-wise diffusion + TV-z)."""

from __future__ import annotations

from typing import Literal

import torch

from medrecon import InputError, ProximalPrior
from medrecon.numerics import tv_prox, tv_value

Direction = Literal["all", "xy", "z"]


class TotalVariation(ProximalPrior):
    """R(x) = weight * TV(x) over the chosen axes of (D, H, W) or (H, W) data.

    `direction`: "all" (every axis), "xy" (within slices: H, W), or "z" (across slices only, the
    TV-z of DiffusionMBIR and DDS). `isotropic` takes the per-voxel gradient norm instead of the sum
    of absolute differences. The prox is computed by `prox_iterations` of fast gradient projection.
    """

    def __init__(
        self,
        weight: float = 0.01,
        direction: Direction = "all",
        isotropic: bool = False,
        prox_iterations: int = 50,
    ):
        if weight < 0:
            raise InputError(f"tv: weight must be >= 0, got {weight}")
        if direction not in ("all", "xy", "z"):
            raise InputError(f"tv: direction must be 'all', 'xy' or 'z', got {direction!r}")
        self.weight = weight
        self.direction = direction
        self.isotropic = isotropic
        self.prox_iterations = prox_iterations

    def axes(self, x: torch.Tensor) -> tuple[int, ...]:
        """The axes TV acts on, for an image (H, W) or a volume (D, H, W)."""
        if self.direction == "z":
            if x.ndim < 3:
                raise InputError("tv with direction 'z' needs a volume (D, H, W), got a 2D image")
            return (-3,)
        if self.direction == "xy" or x.ndim == 2:
            return (-2, -1)
        return (-3, -2, -1)

    def value(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * tv_value(x, self._positive(x), self.isotropic)

    def prox(self, x: torch.Tensor, step: float) -> torch.Tensor:
        return tv_prox(
            x,
            step * self.weight,
            self._positive(x),
            isotropic=self.isotropic,
            iterations=self.prox_iterations,
        )

    def _positive(self, x: torch.Tensor) -> tuple[int, ...]:
        return tuple(a % x.ndim for a in self.axes(x))
