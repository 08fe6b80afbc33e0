"""Cartesian k-space sampling masks."""

from __future__ import annotations

import numpy as np

from medrecon import InputError


def equispaced_mask(width: int, acceleration: float, center_fraction: float, offset: int = 0) -> np.ndarray:
    """1D column mask of length `width`: a fully sampled centre plus equispaced lines.

    The spacing of the outer lines is chosen so that the total number of lines is width /
    acceleration (as in fastMRI's equispaced-fraction masks), hence the realised acceleration is
    close to the requested one.
    """
    if acceleration < 1:
        raise InputError(f"acceleration must be >= 1, got {acceleration}")
    if not 0 < center_fraction <= 1:
        raise InputError(f"center_fraction must be in (0, 1], got {center_fraction}")
    num_low = max(1, int(round(width * center_fraction)))
    target = width / acceleration
    mask = np.zeros(width, dtype=bool)
    pad = (width - num_low + 1) // 2
    mask[pad : pad + num_low] = True
    if target > num_low and acceleration > 1:
        # outer lines needed: (target - num_low) out of (width - num_low) columns
        spacing = (width - num_low) / (target - num_low)
        positions = np.round(np.arange(offset % max(spacing, 1), width, spacing)).astype(int)
        mask[positions[positions < width]] = True
    elif acceleration == 1:
        mask[:] = True
    return mask
