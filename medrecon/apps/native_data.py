"""Training data for a prior at the scan's own resolution: random patches of slices, no resizing.

Patch-based diffusion priors (Wang et al. 2023, "Patch Diffusion"; Hu et al. 2024, "Learning image
priors through patch-based diffusion models for solving inverse problems") learn from random
crops and are applied to whole images. Here each training batch holds crops of one size, drawn
from a few sizes (small patches to whole slices, about the same number of pixels per batch), so
that a fully convolutional network learns local statistics from many patches and also sees whole
slices (its group normalisation then behaves at inference as in training).

Crops come from slices in every requested orientation (axial, coronal, sagittal) of the training
part of each volume: slabs listed as excluded (a held-out test slab, a validation slab, each with
guard slices) are cut out along the slab axis before any slicing, so no crop in any orientation
contains a voxel of them. Each crop is warped (90-degree turns, flips, small rotations and zooms,
a small elastic deformation), then given a contrast: the volume's own, or, where tissue
probability maps are given (grey matter, white matter, and CSF as the rest of the brain), a
synthetic one from random tissue intensities of T1-, T2-, PD- or FLAIR-like ordering. A smooth
bias field and a random global scale follow; a fraction of the crops becomes the real part of a
smooth-phase complex image (magnitude times the cosine of a smooth phase), which is what real and
imaginary parts of MR images look like, so that one real-valued prior serves complex MRI too.

Intensities: a volume is divided by the 99.5th percentile of its absolute values
(`medrecon.numerics.intensity.magnitude_scale`), the same statistic the samplers use to map a problem into
the prior's range; background stays 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medrecon.errors import InputError
from medrecon.numerics.intensity import magnitude_scale

#: contrast families: ranges of (CSF, grey matter, white matter) intensities
CONTRASTS = {
    "t1": ((0.05, 0.3), (0.45, 0.7), (0.8, 1.0)),
    "t2": ((0.8, 1.0), (0.45, 0.7), (0.25, 0.5)),
    "pd": ((0.6, 1.0), (0.75, 1.0), (0.55, 0.8)),
    "flair": ((0.02, 0.15), (0.6, 0.9), (0.4, 0.7)),
    "random": ((0.05, 1.0), (0.05, 1.0), (0.05, 1.0)),
}


@dataclass(frozen=True)
class NativeVolume:
    """A volume in medrecon's (D, H, W) layout (RAS), intensities scaled, voxel sizes in mm."""

    data: torch.Tensor
    affine: np.ndarray
    spacing: tuple[float, float, float]  # (D, H, W) in mm
    scale: float  # the intensity the data was divided by
    path: str


def load_native(path: str | Path) -> NativeVolume:
    """A NIfTI volume reoriented to RAS, as medrecon reads it ((D, H, W) = (k, j, i)), divided by
    the 99.5th percentile of its absolute values."""
    import nibabel as nib

    try:
        image = nib.as_closest_canonical(nib.load(str(path)))
    except Exception as err:  # nibabel raises several kinds for unreadable files
        raise InputError(f"{path}: not a readable NIfTI volume ({err})") from None
    array = np.asarray(image.dataobj, dtype=np.float32)
    if array.ndim != 3:
        raise InputError(f"{path}: expected a 3D volume, got shape {array.shape}")
    data = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 1, 0)))
    scale = magnitude_scale(data)
    zooms = [float(z) for z in image.header.get_zooms()[:3]]
    return NativeVolume(data / scale, np.asarray(image.affine), tuple(zooms[::-1]), scale, str(path))


def tissue_channels(volume: NativeVolume, maps: Sequence[str | Path]) -> torch.Tensor:
    """(CSF, GM, WM) probabilities (3, D, H, W) from grey- and white-matter maps on the volume's
    grid; CSF is the rest of the brain (where the volume is above background)."""
    if len(maps) != 2:
        raise InputError(f"give two tissue maps (grey matter, white matter), got {len(maps)}")
    probabilities = []
    for path in maps:
        tissue = load_native(path)
        if tissue.data.shape != volume.data.shape or not np.allclose(tissue.affine, volume.affine, atol=1e-3):
            raise InputError(
                f"tissue map {path} is not on the grid of {volume.path}: shape "
                f"{tuple(tissue.data.shape)} vs {tuple(volume.data.shape)} (the affines must match too)"
            )
        p = tissue.data * tissue.scale
        probabilities.append((p / p.max().clamp_min(1e-6)).clamp(0, 1))
    gm, wm = probabilities
    from scipy.ndimage import gaussian_filter

    # a soft brain mask: a hard one would give the synthetic images a step at the brain's surface
    brain = torch.from_numpy(gaussian_filter((volume.data > 0.02).numpy().astype(np.float32), 1.0))
    csf = (brain - gm - wm).clamp(0, 1)
    return torch.stack([csf, gm, wm])


def training_segments(depth: int, excluded: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The runs of slice indices (along D) left after cutting out the excluded [start, stop) slabs."""
    keep = np.ones(depth, dtype=bool)
    for start, stop in excluded:
        keep[max(start, 0) : min(stop, depth)] = False
    runs, start = [], None
    for index, flag in enumerate([*keep, False]):
        if flag and start is None:
            start = index
        elif not flag and start is not None:
            runs.append((start, index))
            start = None
    return runs


def _smooth_field(gen: torch.Generator, size: tuple[int, int], grid: int, std: float) -> torch.Tensor:
    """A smooth random field (H, W): Gaussian values on a coarse grid, upsampled bicubically."""
    coarse = torch.randn(1, 1, grid, grid, generator=gen) * std
    return F.interpolate(coarse, size=size, mode="bicubic", align_corners=True)[0, 0]


class PatchSource:
    """Random training batches (B, 1, P, P) of warped, re-contrasted crops of native slices.

    `sizes` and `size_weights`: the crop sizes and how often each is drawn; a batch of size P holds
    max(1, round(pixels / P^2)) crops. `axes`: the orientations to slice (0: axial planes (H, W),
    1: coronal (D, W), 2: sagittal (D, H), in medrecon's layout of a RAS volume).
    """

    def __init__(
        self,
        volumes: Sequence[NativeVolume],
        tissues: Sequence[torch.Tensor | None],
        excluded: Sequence[tuple[int, int]],
        *,
        sizes: Sequence[int] = (48, 64, 128, 224),
        size_weights: Sequence[float] = (0.3, 0.3, 0.25, 0.15),
        pixels: int = 16 * 64 * 64,
        axes: Sequence[int] = (0, 1, 2),
        own_contrast: float = 0.4,
        signed: float = 0.3,
        max_rotation: float = 10.0,
        zoom: tuple[float, float] = (0.85, 1.2),
        elastic: float = 2.0,
    ):
        if len(sizes) != len(size_weights) or not sizes:
            raise InputError("give one weight per patch size")
        if any(a not in (0, 1, 2) for a in axes) or not axes:
            raise InputError(f"axes must be among 0, 1, 2, got {list(axes)}")
        self.sizes, self.axes = [int(s) for s in sizes], tuple(axes)
        self.weights = torch.tensor([float(w) for w in size_weights])
        self.pixels, self.own_contrast, self.signed = pixels, own_contrast, signed
        self.max_rotation, self.zoom, self.elastic = max_rotation, zoom, elastic
        self.pieces: list[torch.Tensor] = []  # (C, d, H, W): channel 0 the image, then tissues
        for volume, tissue in zip(volumes, tissues, strict=True):
            stack = volume.data[None] if tissue is None else torch.cat([volume.data[None], tissue])
            for start, stop in training_segments(volume.data.shape[0], excluded):
                self.pieces.append(stack[:, start:stop])
        if not self.pieces:
            raise InputError("no training slices left after cutting out the held-out slabs")
        # crops are centred near anatomy: a subsample of each piece's foreground voxels (d, h, w)
        self.foreground = [torch.nonzero(p[0].abs() > 0.05)[::7] for p in self.pieces]
        self.has_tissues = all(t is not None for t in tissues)

    def describe(self) -> dict[str, Any]:
        return {
            "patch_sizes": self.sizes,
            "patch_size_weights": [round(float(w), 4) for w in self.weights],
            "pixels_per_batch": self.pixels,
            "orientations": [("axial", "coronal", "sagittal")[a] for a in self.axes],
            "training_segments_slices": [int(p.shape[1]) for p in self.pieces],
            "own_contrast_fraction": self.own_contrast if self.has_tissues else 1.0,
            "synthetic_contrasts": list(CONTRASTS) if self.has_tissues else [],
            "signed_fraction": self.signed,
            "augmentation": (
                f"90-degree turns and flips, rotations up to {self.max_rotation} degrees, zooms "
                f"{self.zoom[0]}-{self.zoom[1]}, elastic displacements of std {self.elastic} px, "
                "smooth bias fields, global scale 0.85-1.15"
            ),
        }

    def sample(self, gen: torch.Generator) -> torch.Tensor:
        size = self.sizes[int(torch.multinomial(self.weights, 1, generator=gen))]
        count = max(1, round(self.pixels / size**2))
        return torch.stack([self._item(gen, size) for _ in range(count)])

    # -----------------------------------------------------------------------------------------

    def _item(self, gen: torch.Generator, size: int) -> torch.Tensor:
        for _ in range(20):
            angle = (float(torch.rand(1, generator=gen)) * 2 - 1) * math.radians(self.max_rotation)
            lo, hi = self.zoom
            zoom = lo + float(torch.rand(1, generator=gen)) * (hi - lo)  # output pixels per input pixel
            window = math.ceil(size * (abs(math.cos(angle)) + abs(math.sin(angle))) / zoom) + 4
            crop = self._warp(gen, self._plane(gen, window), size, angle, zoom, window)
            # mostly anatomy; now and then a crop of mostly background, which the prior must know too
            if (
                float((crop[0].abs() > 0.05).float().mean()) >= 0.1
                or float(torch.rand(1, generator=gen)) < 0.05
            ):
                break
        return self._contrast(gen, crop)[None]

    def _plane(self, gen: torch.Generator, window: int) -> torch.Tensor:
        """A (C, window, window) window of one slice around a random foreground voxel (zero outside
        the in-plane field of view; along the slab axis the window stays inside its segment)."""
        fits = [a for a in self.axes if a == 0 or any(p.shape[1] >= window for p in self.pieces)]
        axis = fits[int(torch.randint(len(fits), (1,), generator=gen))]
        allowed = [i for i, p in enumerate(self.pieces) if axis == 0 or p.shape[1] >= window]
        counts = torch.tensor([float(len(self.foreground[i])) for i in allowed])
        index = allowed[int(torch.multinomial(counts.clamp_min(1e-6), 1, generator=gen))]
        piece, voxels = self.pieces[index], self.foreground[index]
        if len(voxels):
            d, h, w = voxels[int(torch.randint(len(voxels), (1,), generator=gen))].tolist()
        else:
            d, h, w = (int(torch.randint(n, (1,), generator=gen)) for n in piece.shape[1:])
        jitter = torch.randint(-window // 4, window // 4 + 1, (2,), generator=gen).tolist()
        if axis == 0:
            plane, centre = piece[:, d], (h, w)
        elif axis == 1:
            plane, centre = piece[:, :, h], (d, w)
        else:
            plane, centre = piece[:, :, :, w], (d, h)
        rows, cols = plane.shape[1:]
        top = centre[0] + jitter[0] - window // 2
        if axis != 0:
            top = min(max(top, 0), rows - window)
        left = centre[1] + jitter[1] - window // 2
        out = torch.zeros(plane.shape[0], window, window)
        r0, r1, c0, c1 = max(top, 0), min(top + window, rows), max(left, 0), min(left + window, cols)
        if r1 > r0 and c1 > c0:
            out[:, r0 - top : r1 - top, c0 - left : c1 - left] = plane[:, r0:r1, c0:c1]
        return out

    def _warp(self, gen, plane, size, angle, zoom, window) -> torch.Tensor:
        """Rotate, zoom, turn, flip and deform the window's centre into a (C, size, size) crop."""
        turns = int(torch.randint(4, (1,), generator=gen))
        flip = bool(torch.rand(1, generator=gen) < 0.5)
        centre = (size - 1) / 2
        v, u = torch.meshgrid(torch.arange(size) - centre, torch.arange(size) - centre, indexing="ij")
        if flip:
            u = -u
        for _ in range(turns):
            u, v = -v, u
        cos, sin = math.cos(angle), math.sin(angle)
        x = (cos * u - sin * v) / zoom
        y = (sin * u + cos * v) / zoom
        amplitude = float(torch.rand(1, generator=gen)) * self.elastic
        x = x + _smooth_field(gen, (size, size), 5, amplitude)
        y = y + _smooth_field(gen, (size, size), 5, amplitude)
        half = (window - 1) / 2
        grid = torch.stack([x / half, y / half], dim=-1)[None]  # window centre at 0
        return F.grid_sample(plane[None], grid, mode="bilinear", align_corners=True)[0]

    def _contrast(self, gen: torch.Generator, crop: torch.Tensor) -> torch.Tensor:
        """(size, size): the crop's own contrast or a synthetic one, bias, scale, maybe signed."""
        if not self.has_tissues or float(torch.rand(1, generator=gen)) < self.own_contrast:
            gamma = 0.7 + 0.7 * float(torch.rand(1, generator=gen))
            image = crop[0].clamp_min(0) ** gamma
        else:
            family = list(CONTRASTS.values())[int(torch.randint(len(CONTRASTS), (1,), generator=gen))]
            levels = torch.tensor([lo + (hi - lo) * float(torch.rand(1, generator=gen)) for lo, hi in family])
            image = (crop[1:] * (levels / levels.max())[:, None, None]).sum(dim=0)
        size = image.shape[-2:]
        image = image * torch.exp(_smooth_field(gen, size, 4, 0.12))
        image = image * (0.85 + 0.3 * float(torch.rand(1, generator=gen)))
        if float(torch.rand(1, generator=gen)) < self.signed:
            offset = float(torch.rand(1, generator=gen)) * 2 * math.pi
            image = image * torch.cos(offset + _smooth_field(gen, size, 3, 1.0))
        return image


def validation_images(volume: torch.Tensor, slab: tuple[int, int], multiple: int) -> torch.Tensor:
    """The axial slices of the validation slab of a (D, H, W) volume as (N, 1, H', W'), padded with
    background to a multiple of `multiple`: whole slices, as the prior meets them when it reconstructs."""
    start, stop = slab
    if not 0 <= start < stop <= volume.shape[0]:
        raise InputError(f"validation slab {start}:{stop} is outside the {volume.shape[0]} slices")
    slices = volume[start:stop, None]
    height, width = slices.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    padding = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
    return F.pad(slices, padding)


def native_holdout(volume_path: str | Path, slab: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The held-out axial slab at full resolution in [0, 1] (divided by the volume's maximum) and
    the affine that places it exactly where it lies in the volume."""
    import nibabel as nib

    image = nib.as_closest_canonical(nib.load(str(volume_path)))
    data = np.asarray(image.dataobj, dtype=np.float32).transpose(2, 1, 0)
    start, stop = slab
    if not 0 <= start < stop <= data.shape[0]:
        raise InputError(f"holdout {start}:{stop} is outside the {data.shape[0]} slices")
    part = np.ascontiguousarray(data[start:stop] / max(float(data.max()), 1e-12))
    shift = np.eye(4)
    shift[2, 3] = start
    return part.astype(np.float32), np.asarray(image.affine) @ shift
