"""Cartesian k-space sampling masks: equispaced and variable-density random lines, Poisson disc.

Every generator aims at a total of size / acceleration samples, so the realised acceleration
(size / samples) is within a few percent of the requested one.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from medrecon import InputError

MaskType = Literal["equispaced", "random", "poisson"]


def _check(acceleration: float, center_fraction: float) -> None:
    if acceleration < 1:
        raise InputError(f"acceleration must be >= 1, got {acceleration}")
    if not 0 < center_fraction <= 1:
        raise InputError(f"center_fraction must be in (0, 1], got {center_fraction}")


def _centre(width: int, center_fraction: float) -> tuple[np.ndarray, int]:
    num_low = max(1, int(round(width * center_fraction)))
    mask = np.zeros(width, dtype=bool)
    pad = (width - num_low + 1) // 2
    mask[pad : pad + num_low] = True
    return mask, num_low


def equispaced_mask(width: int, acceleration: float, center_fraction: float, offset: int = 0) -> np.ndarray:
    """1D line mask: a fully sampled centre plus equispaced lines (fastMRI's equispaced fraction).

    The spacing of the outer lines is chosen so that the total is width / acceleration lines.
    """
    _check(acceleration, center_fraction)
    if acceleration == 1:
        return np.ones(width, dtype=bool)
    mask, num_low = _centre(width, center_fraction)
    target = width / acceleration
    if target > num_low:
        spacing = (width - num_low) / (target - num_low)  # outer lines among the outer columns
        positions = np.round(np.arange(offset % max(spacing, 1), width, spacing)).astype(int)
        mask[positions[positions < width]] = True
    return mask


def random_mask(width: int, acceleration: float, center_fraction: float, seed: int = 0) -> np.ndarray:
    """1D variable-density random line mask: a fully sampled centre plus lines drawn without
    replacement with probability falling off as (1 - |k| / k_max)^2, to width / acceleration lines."""
    _check(acceleration, center_fraction)
    mask, num_low = _centre(width, center_fraction)
    extra = int(round(width / acceleration)) - num_low
    if extra > 0:
        k = np.abs(np.arange(width) - width // 2) / (width / 2)
        weight = (1 - np.clip(k, 0, 1)) ** 2 + 1e-3
        weight[mask] = 0
        rng = np.random.default_rng(seed)
        mask[rng.choice(width, size=extra, replace=False, p=weight / weight.sum())] = True
    return mask


def poisson_mask(
    shape: tuple[int, int], acceleration: float, center_fraction: float, seed: int = 0
) -> np.ndarray:
    """2D variable-density Poisson-disc mask over two phase-encode directions (sigpy), with a
    fully sampled square calibration region of center_fraction of the smaller side."""
    from sigpy.mri import poisson

    _check(acceleration, center_fraction)
    if acceleration == 1:
        return np.ones(shape, dtype=bool)
    calib = max(2, int(round(min(shape) * center_fraction)))
    try:
        mask = poisson(
            shape, acceleration, calib=(calib, calib), seed=seed, dtype=np.float32, tol=0.04 * acceleration
        )
    except ValueError as err:
        raise InputError(
            f"no Poisson-disc mask of {shape} reaches acceleration {acceleration}: {err}"
        ) from None
    return mask > 0


def random_mask_2d(
    shape: tuple[int, int], acceleration: float, center_fraction: float, seed: int = 0
) -> np.ndarray:
    """2D variable-density random mask over two phase-encode directions: a fully sampled central
    square plus points drawn with probability falling off as (1 - r)^2, to size / acceleration."""
    _check(acceleration, center_fraction)
    if acceleration == 1:
        return np.ones(shape, dtype=bool)
    ny, nx = shape
    calib = max(2, int(round(min(shape) * center_fraction)))
    mask = np.zeros(shape, dtype=bool)
    y0, x0 = (ny - calib + 1) // 2, (nx - calib + 1) // 2
    mask[y0 : y0 + calib, x0 : x0 + calib] = True
    extra = int(round(ny * nx / acceleration)) - int(mask.sum())
    if extra > 0:
        y, x = np.mgrid[:ny, :nx]
        r = np.sqrt(((y - ny // 2) / (ny / 2)) ** 2 + ((x - nx // 2) / (nx / 2)) ** 2) / np.sqrt(2)
        weight = ((1 - np.clip(r, 0, 1)) ** 2 + 1e-3).ravel()
        weight[mask.ravel()] = 0
        rng = np.random.default_rng(seed)
        mask.ravel()[rng.choice(ny * nx, size=extra, replace=False, p=weight / weight.sum())] = True
    return mask
