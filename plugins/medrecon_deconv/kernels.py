"""Blur kernels: anisotropic Gaussians, random motion trajectories, and random kernel collections
to train a kernel prior on (the `blur-kernels` dataset of `medrecon train-prior --dataset`).
Valid kernels (non-negative, summing to one) come from `medrecon.numerics.clip_and_normalise`."""

from __future__ import annotations

import numpy as np

from medrecon import InputError


def _check_size(size: int, ndim: int) -> None:
    if size < 1 or size % 2 == 0:
        raise InputError(f"kernel_size must be odd and >= 1, got {size}")
    if ndim not in (2, 3):
        raise InputError(f"kernels are 2D or 3D, got {ndim} dimensions")


def gaussian_kernel(size: int, sigma: tuple[float, ...], angle: float = 0.0) -> np.ndarray:
    """Anisotropic Gaussian, normalised to sum one; `sigma` per axis in pixels (2 or 3 values),
    the 2D one rotated by `angle` degrees."""
    ndim = len(sigma)
    _check_size(size, ndim)
    if min(sigma) <= 0:
        raise InputError(f"sigma must be > 0 pixels, got {sigma}")
    axis = np.arange(size) - size // 2
    grids = np.meshgrid(*([axis] * ndim), indexing="ij")
    coords = np.stack([g.ravel() for g in grids]).astype(np.float64)
    if ndim == 2 and angle:
        a = np.radians(angle)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        coords = rot.T @ coords
    quad = sum((c / s) ** 2 for c, s in zip(coords, sigma, strict=True))
    kernel = np.exp(-0.5 * quad).reshape((size,) * ndim)
    return (kernel / kernel.sum()).astype(np.float32)


def motion_kernel(size: int, ndim: int = 2, intensity: float = 0.5, seed: int = 0) -> np.ndarray:
    """A random camera-shake trajectory rasterised into a kernel (sum one).

    The trajectory is a random walk with inertia whose jerkiness grows with `intensity` (0 .. 1),
    in the spirit of Boracchi and Foi (2012); it is scaled to fill the kernel's support.
    """
    _check_size(size, ndim)
    if not 0 <= intensity <= 1:
        raise InputError(f"intensity must be in [0, 1], got {intensity}")
    rng = np.random.default_rng(seed)
    steps = 2000
    velocity = rng.standard_normal(ndim)
    velocity /= np.linalg.norm(velocity)
    position = np.zeros(ndim)
    path = np.empty((steps, ndim))
    for i in range(steps):
        velocity += intensity * 0.2 * rng.standard_normal(ndim) - 0.002 * position
        velocity /= max(np.linalg.norm(velocity), 1e-12)
        position = position + velocity * 0.05
        path[i] = position
    path -= path.mean(axis=0)
    extent = np.abs(path).max()
    path *= (size // 2 - 0.5) / max(extent, 1e-12)  # fill the support, stay inside it
    path += size // 2
    kernel = np.zeros((size,) * ndim)
    lo = np.floor(path).astype(int)
    frac = path - lo
    for corner in np.ndindex(*([2] * ndim)):  # linear splatting onto the grid
        offset = np.array(corner)
        weight = np.prod(np.where(offset, frac, 1 - frac), axis=1)
        idx = np.clip(lo + offset, 0, size - 1)
        np.add.at(kernel, tuple(idx.T), weight)
    return (kernel / kernel.sum()).astype(np.float32)


def random_kernels(count: int, size: int, seed: int = 0) -> np.ndarray:
    """`count` random blur kernels (count, size, size), each summing to one: half motion trajectories
    (support 5 .. size pixels, intensity 0 .. 1), half anisotropic Gaussians (sigmas 0.5 .. size / 5
    pixels, any angle), each centred in the size x size frame."""
    _check_size(size, 2)
    rng = np.random.default_rng(seed)
    out = np.zeros((count, size, size), dtype=np.float32)
    for i in range(count):
        if i % 2 == 0:
            support = int(rng.choice(np.arange(5, size + 1, 2)))
            kernel = motion_kernel(support, 2, float(rng.uniform(0, 1)), int(rng.integers(2**31)))
        else:
            sigma = tuple(float(s) for s in rng.uniform(0.5, max(size / 5, 0.6), 2))
            kernel = gaussian_kernel(size, sigma, float(rng.uniform(0, 180)))
        pad = (size - kernel.shape[0]) // 2
        out[i, pad : pad + kernel.shape[0], pad : pad + kernel.shape[1]] = kernel
    return out
