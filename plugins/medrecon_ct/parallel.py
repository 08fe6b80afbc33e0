"""2D parallel-beam CT, slice by slice for volumes: sparse-view and limited-angle geometries."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

from medrecon import InputError, Operator
from medrecon_ct.fbp import ramp_filter
from medrecon_ct.joseph import joseph_matrix, transpose_csr
from medrecon_ct.matrix_free import JosephProjector, matrix_bytes

Window = Literal["ramp", "shepp-logan", "cosine", "hamming", "hann"]


def parallel_angles(
    views: int = 180,
    angle_range: tuple[float, float] | None = None,
    angle_step: float = 1.0,
    angles: np.ndarray | None = None,
) -> np.ndarray:
    """Projection angles in degrees: explicit, `views` spread over [0, 180), or a limited range."""
    if angles is not None:
        out = np.asarray(angles, dtype=np.float64).reshape(-1)
    elif angle_range is not None:
        start, stop = angle_range
        if not stop > start:
            raise InputError(f"angle_range must be (start, stop) with stop > start, got {angle_range}")
        if angle_step <= 0:
            raise InputError(f"angle_step must be > 0 degrees, got {angle_step}")
        out = np.arange(start, stop, angle_step, dtype=np.float64)
    else:
        if views < 1:
            raise InputError(f"views must be >= 1, got {views}")
        out = np.arange(views, dtype=np.float64) * (180.0 / views)
    if out.size == 0:
        raise InputError("the geometry has no projection angle")
    if not np.all(np.isfinite(out)) or out.min() < -360 or out.max() > 360:
        raise InputError(
            f"angles must lie within [-360, 360] degrees, got [{out.min()}, {out.max()}]; "
            "angles are given in degrees, not radians"
        )
    return out


class ParallelBeamCT(Operator):
    """2D parallel-beam projection (Joseph's method) applied to each slice of a (D, H, W) volume.

    Image (D, H, W) or (H, W) -> sinogram (D, angles, detectors) or (angles, detectors), float32;
    detectors default to the slice's diagonal, ceil(sqrt(H^2 + W^2)).
    Unit pixel and detector spacing, rotation about the image's geometric centre (as ASTRA does).
    The adjoint is the exact transpose of the forward matrix. The projector is a sparse matrix
    while building it fits `memory_budget_gb` (estimated first), else matrix-free (the same
    samples computed per chunk of angles at each application, bounded memory, slower);
    `projector` forces either. `photons` adds Poisson counting noise
    to simulated data: counts ~ Poisson(photons * exp(-y)), with x in attenuation per pixel length.
    """

    slice_axis = 0
    first_look_name = "fbp"
    #: parameters that change how the operator is computed, not what it is: free at reconstruction
    implementation_parameters = ("projector", "memory_budget_gb")

    def __init__(
        self,
        shape: tuple[int, ...] | None = None,
        views: int = 180,
        angle_range: tuple[float, float] | None = None,
        angle_step: float = 1.0,
        angles: np.ndarray | None = None,
        detectors: int | None = None,
        photons: float | None = None,
        projector: Literal["auto", "matrix", "matrix-free"] = "auto",
        memory_budget_gb: float = 2.0,
        measurement: torch.Tensor | None = None,
    ):
        super().__init__()
        self.angles_deg = parallel_angles(views, angle_range, angle_step, angles)
        if shape is None:
            raise InputError("ct-parallel needs the image shape (D, H, W) or (H, W)")
        shape = tuple(int(s) for s in shape)
        if len(shape) not in (2, 3) or min(shape[-2:]) < 2:
            raise InputError(
                f"ct-parallel needs slices (H, W) or a volume (D, H, W) of at least 2 x 2, got {shape}"
            )
        height, width = shape[-2:]
        detectors = math.ceil(math.hypot(height, width)) if detectors is None else int(detectors)
        if detectors < 1:
            raise InputError(f"detectors must be >= 1, got {detectors}")
        if photons is not None and photons <= 0:
            raise InputError(f"photons must be > 0, got {photons}")
        self.image_size, self.detectors, self.photons = (height, width), detectors, photons
        self.domain_shape = shape
        self.range_shape = (*shape[:-2], len(self.angles_deg), detectors)
        if projector not in ("auto", "matrix", "matrix-free"):
            raise InputError(f"projector must be 'auto', 'matrix' or 'matrix-free', got {projector!r}")
        if not memory_budget_gb > 0:
            raise InputError(f"memory_budget_gb must be > 0, got {memory_budget_gb}")
        self.matrix_estimate = matrix_bytes((height, width), len(self.angles_deg), detectors)
        if projector == "auto":  # the matrix is faster to apply; without it memory stays bounded
            projector = "matrix" if self.matrix_estimate <= memory_budget_gb * 2**30 else "matrix-free"
        self.projector = projector
        if projector == "matrix":
            matrix = joseph_matrix((height, width), np.radians(self.angles_deg), detectors)
            self.register_buffer("matrix", matrix, persistent=False)
            self.register_buffer("matrix_t", transpose_csr(matrix), persistent=False)
        else:
            self._joseph = JosephProjector((height, width), np.radians(self.angles_deg), detectors)
        if measurement is not None:
            self.check_range(measurement)

    @property
    def views(self) -> int:
        return len(self.angles_deg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.projector == "matrix-free":
            lead = x.shape[:-2]
            sino = self._joseph.forward(x.reshape(-1, *self.image_size))
            return sino.reshape(*lead, self.views, self.detectors)
        return _apply(self.matrix, x, 2, (self.views, self.detectors))

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        if self.projector == "matrix-free":
            lead = y.shape[:-2]
            image = self._joseph.adjoint(y.reshape(-1, self.views, self.detectors))
            return image.reshape(*lead, *self.image_size)
        return _apply(self.matrix_t, y, 2, self.image_size)

    def first_look(self, y: torch.Tensor) -> torch.Tensor:
        return self.fbp(y)

    def fbp(self, y: torch.Tensor, window: Window = "ramp") -> torch.Tensor:
        """Filtered back-projection: ramp-filter each projection, back-project, scale by pi / (2 views)."""
        n = self.detectors
        padded = max(64, 1 << math.ceil(math.log2(2 * n)))
        filt = ramp_filter(padded, window, dtype=y.dtype, device=y.device)
        spectrum = torch.fft.rfft(y, n=padded, dim=-1) * filt
        filtered = torch.fft.irfft(spectrum, n=padded, dim=-1)[..., :n]
        return self.adjoint(filtered) * (math.pi / (2 * self.views))

    def simulate(self, x: torch.Tensor, noise_std: float, seed: int = 0) -> torch.Tensor:
        """Sinogram with Poisson counting noise (when `photons` is set) and Gaussian noise_std."""
        y = super().simulate(x, noise_std, seed)
        if self.photons is None:
            return y
        gen = torch.Generator().manual_seed(int(seed) + 1)
        with torch.no_grad():
            clean = self.forward(x).cpu()
        counts = torch.poisson(self.photons * torch.exp(-clean.double()), generator=gen)
        counts = counts.clamp_min(0.5)  # a bin with no photon: the usual half-count floor before the log
        photon_noise = (-torch.log(counts / self.photons) - clean.double()).float()
        return y + photon_noise.to(y.device)

    def inverse_variance(self, y: torch.Tensor, noise_std: float) -> torch.Tensor | None:
        """1 / (noise_std^2 + 1 / counts) per bin with `photons`: the log of Poisson counts has
        variance ~ 1 / counts, counts estimated from y itself as photons * exp(-y) (the
        statistical weights of penalised weighted least squares); None without `photons`."""
        if self.photons is None:
            return None
        counts = (self.photons * torch.exp(-y.double())).clamp_min(0.5)  # the half-count floor
        return (1.0 / (noise_std**2 + 1.0 / counts)).to(y.dtype)

    def describe(self) -> dict:
        return {
            "views": self.views,
            "detectors": self.detectors,
            "projector": self.projector,
            "matrix_estimate_gb": round(self.matrix_estimate / 2**30, 2),
        }

    def arrays(self) -> dict[str, torch.Tensor]:
        return {"angles": torch.from_numpy(self.angles_deg.astype(np.float32))}


def _apply(matrix: torch.Tensor, t: torch.Tensor, core: int, out: tuple[int, int]) -> torch.Tensor:
    """Apply a (M, K) matrix to every trailing `core`-dimensional item of t, all items in one product."""
    lead = t.shape[:-core]
    columns = t.reshape(-1, matrix.shape[1]).T.contiguous()
    result = (matrix @ columns).T
    return result.reshape(*lead, *out)
