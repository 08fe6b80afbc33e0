"""Built-in sample data: the held-out brain slab shipped with the brain-axial prior, and phantoms."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import numpy as np

#: axial slices 80-95 of the MNI152 2009a T1 template at the brain-axial prior's 64 x 64 resolution,
#: held out of that prior's training (see its prior card); intensities in [0, 1]
BRAIN_SAMPLE = "brain_axial_holdout.nii.gz"


def brain_sample_path() -> Path:
    return Path(str(files("medrecon") / "data" / BRAIN_SAMPLE))


def brain_sample() -> tuple[np.ndarray, np.ndarray]:
    """The shipped brain sample as a (D, H, W) float32 volume in [0, 1] and its affine."""
    from medrecon.io import load_nifti

    volume = load_nifti(brain_sample_path())
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
