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
