"""What the deconvolution plugin gives the core's training commands: the `blur` task (known-kernel
blur, for conditional models) and the `blur-kernels` dataset (random kernels as prior images, for
the kernel prior of `blind-dps`)."""

from __future__ import annotations

import torch

from medrecon import InputError, TrainingImages, TrainingTask
from medrecon_deconv.kernels import random_kernels

#: the kernel prior's network: small images (16 x 16), no attention
KERNEL_ARCHITECTURE = {
    "class": "DiffusionModelUNet",
    "spatial_dims": 2,
    "in_channels": 1,
    "out_channels": 1,
    "channels": [32, 64, 64],
    "attention_levels": [False, False, False],
    "num_res_blocks": 1,
    "num_head_channels": 32,
}


def blur_task() -> TrainingTask:
    """Motion or anisotropic Gaussian blur, 5-9 px kernels, any angle, the kernel known."""

    def draw(u):
        return {
            "name": "blind-deconv",
            "kernel_type": TrainingTask.pick(u, ("motion", "gaussian")),
            "kernel_size": TrainingTask.pick(u, (5, 7, 9)),
            "sigma": [round(0.6 + 1.8 * u(), 2), round(0.6 + 1.8 * u(), 2)],
            "angle": round(180 * u()),
            "seed": int(u() * 1000),
        }

    return TrainingTask(
        "blur",
        draw,
        {
            "operator": "blind-deconv (known kernel)",
            "kernel_type": ["motion", "gaussian"],
            "kernel_size": [5, 9],
        },
        validation={"name": "blind-deconv", "kernel_type": "motion", "kernel_size": 9, "seed": 3},
    )


def kernel_images(kernels: torch.Tensor, image_size: int) -> torch.Tensor:
    """Blur kernels (N, k, k) as prior images (N, 1, S, S): each divided by its maximum and mapped
    to [-1, 1], placed at the top-left of an S x S frame of background (-1) (S >= k)."""
    n, k = kernels.shape[0], kernels.shape[-1]
    if image_size < k:
        raise InputError(f"kernel prior image size {image_size} is smaller than the kernels ({k})")
    peak = kernels.flatten(1).amax(dim=1).clamp_min(1e-12)[:, None, None]
    images = torch.full((n, 1, image_size, image_size), -1.0)
    images[:, 0, :k, :k] = 2 * kernels / peak - 1
    return images


def blur_kernels(
    count: int = 4000, seed: int = 0, kernel_size: int = 15, image_size: int | None = None
) -> TrainingImages:
    """`count` random kernels (half motion trajectories, half anisotropic Gaussians) of odd size
    `kernel_size`, as images of side `image_size` (default: kernel_size + 1 rounded up to 4s)."""
    size = image_size or -(-(kernel_size + 1) // 4) * 4
    kernels = torch.from_numpy(random_kernels(count, kernel_size, seed=seed))
    data = {
        "kind": "kernel",
        "source": "medrecon_deconv random_kernels: half motion trajectories, half anisotropic Gaussians",
        "kernel_size": kernel_size,
        "notice": "procedurally generated; no external data",
    }
    intensity = {
        "data_range": [-1.0, 1.0],
        "normalisation": f"kernel / max -> [-1, 1], at the top-left {kernel_size}x{kernel_size} of the frame",
    }
    return TrainingImages(kernel_images(kernels, size), data, intensity, KERNEL_ARCHITECTURE)
