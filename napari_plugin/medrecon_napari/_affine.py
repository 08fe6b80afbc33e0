"""Between NIfTI's (i, j, k) -> (x, y, z) affine and napari's for medrecon's (D, H, W) arrays."""

from __future__ import annotations

import numpy as np

# Reverses the three spatial axes in homogeneous coordinates: (i, j, k) <-> (k, j, i).
_REVERSE = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)


def layer_affine(nifti_affine: np.ndarray) -> np.ndarray:
    """napari affine for a (D, H, W) array: data (k, j, i) -> world (z, y, x) in mm."""
    return _REVERSE @ np.asarray(nifti_affine, dtype=float) @ _REVERSE


def nifti_affine(layer_affine_matrix: np.ndarray) -> np.ndarray:
    """Inverse of `layer_affine` (the reversal is its own inverse)."""
    return _REVERSE @ np.asarray(layer_affine_matrix, dtype=float) @ _REVERSE


#: napari's world axes (z, y, x) for medrecon's layers: RAS patient axes in mm
WORLD_UNITS = ("mm", "mm", "mm")
WORLD_AXIS_LABELS = ("superior", "anterior", "right")


def placement(nifti_affine: np.ndarray | None) -> dict:
    """Layer keyword arguments that place a (D, H, W) volume: its affine, mm units and the RAS
    world axes' names (nothing but the units and names when no affine is known)."""
    placed = {"units": WORLD_UNITS, "axis_labels": WORLD_AXIS_LABELS}
    if nifti_affine is not None:
        placed["affine"] = layer_affine(nifti_affine)
    return placed
