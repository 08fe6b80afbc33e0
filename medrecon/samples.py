"""Built-in sample data: held-out brain slabs shipped with the brain priors, and phantoms."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import numpy as np

#: the shipped brain slabs: axial slices 80-95 of the MNI152 2009a T1 template, held out of the
#: training of the prior of the same resolution (see its card); intensities in [0, 1]
BRAIN_SAMPLES = {
    # 16 x 233 x 197 at 1 mm, the template's own grid (divided by its maximum): held out of brain-1mm
    "1mm": "brain_1mm_holdout.nii.gz",
    # 16 x 64 x 64 at 2.8 mm, as the brain-axial prior saw its training slices
    "2.8mm": "brain_axial_holdout.nii.gz",
}


def brain_sample_path(resolution: str = "1mm") -> Path:
    if resolution not in BRAIN_SAMPLES:
        raise ValueError(f"no brain sample at {resolution!r}; choose one of {', '.join(BRAIN_SAMPLES)}")
    return Path(str(files("medrecon") / "data" / BRAIN_SAMPLES[resolution]))


def brain_sample(resolution: str = "1mm") -> tuple[np.ndarray, np.ndarray]:
    """A shipped brain sample as a (D, H, W) float32 volume in [0, 1] and its affine: "1mm" (the
    template's grid, 16 x 233 x 197) or "2.8mm" (16 x 64 x 64)."""
    from medrecon.io import load_nifti

    volume = load_nifti(brain_sample_path(resolution))
    return volume.data.astype(np.float32), volume.affine


def phantom_volume(shape: tuple[int, int, int] = (16, 64, 64)) -> np.ndarray:
    """A 3D Shepp-Logan phantom (sigpy), float32 in [0, 1], (D, H, W)."""
    import sigpy

    return np.abs(sigpy.shepp_logan(shape)).astype(np.float32)


def smooth_phase(shape: tuple[int, ...], seed: int = 0, spread: float = 2.5) -> np.ndarray:
    """A smooth random phase map (radians, float32) of an image or volume, like the background
    phase of MR images (field inhomogeneity, coil and receive phase): a random constant plus four
    random waves of at most 0.6 cycles across the field of view, scaled to span `spread` radians."""
    rng = np.random.default_rng([int(seed), 7919])  # a stream apart from the measurement noise's
    grids = np.meshgrid(*(np.linspace(-0.5, 0.5, n) for n in shape), indexing="ij")
    field = np.zeros(shape)
    for _ in range(4):
        frequency = rng.uniform(-0.6, 0.6, len(shape))
        field += np.cos(
            2 * np.pi * sum(f * g for f, g in zip(frequency, grids, strict=True)) + rng.uniform(0, 2 * np.pi)
        )
    field -= field.mean()
    field *= spread / max(float(np.ptp(field)), 1e-12)
    return (field + rng.uniform(-np.pi, np.pi)).astype(np.float32)


def slab(
    volume: np.ndarray, affine: np.ndarray | None, start: int, stop: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Slices start..stop-1 of a (D, H, W) volume, and the affine that keeps them where they were."""
    if not 0 <= start < stop <= volume.shape[0]:
        raise ValueError(f"slices {start}:{stop} are outside a volume of {volume.shape[0]} slices")
    part = np.ascontiguousarray(volume[start:stop])
    if affine is None:
        return part, None
    shift = np.eye(4)
    shift[2, 3] = start  # D is the NIfTI k axis
    return part, affine @ shift
