"""Diffusion networks and their prior cards: what the training command writes and priors load.

A prior card is JSON beside safetensors weights: architecture (MONAI DiffusionModelUNet
arguments), schedule (MONAI DDPMScheduler arguments), prediction type, image size, intensity
range, training data. This is model I/O, not physics, so it lives in the core: `medrecon
train-prior` writes cards and the `diffusion` prior plugin reads them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from medrecon.errors import InputError


def build_unet(architecture: dict[str, Any]) -> torch.nn.Module:
    """A MONAI DiffusionModelUNet from the card's architecture entry."""
    from monai.networks.nets import DiffusionModelUNet

    arch = dict(architecture)
    name = arch.pop("class", "DiffusionModelUNet")
    mid_attention = arch.pop("mid_block_attention", True)
    if name != "DiffusionModelUNet":
        raise InputError(f"unsupported network class {name!r} in prior card: expected DiffusionModelUNet")
    try:
        network = DiffusionModelUNet(**arch)
    except TypeError as err:
        raise InputError(f"prior card architecture does not fit DiffusionModelUNet: {err}") from None
    if not mid_attention:
        # MONAI's middle block always holds a self-attention over every pixel of the lowest level,
        # whose cost grows with the square of the slice size; without it the network is fully
        # convolutional and costs the same per pixel at any size.
        network.middle_block.attention = torch.nn.Identity()
    return network


def size_multiple(architecture: dict[str, Any]) -> int:
    """What a DiffusionModelUNet's input sides must be multiples of: 2^(levels - 1)."""
    return 2 ** (len(architecture.get("channels", (32, 64, 64, 64))) - 1)


def schedule_table(schedule: dict[str, Any]) -> torch.Tensor:
    """alpha-bar from the card's schedule entry, by MONAI's DDPM scheduler."""
    from monai.networks.schedulers import DDPMScheduler

    args = dict(schedule)
    args.pop("scheduler", None)
    return DDPMScheduler(**args).alphas_cumprod.float()


def save_prior(path: str | Path, network: torch.nn.Module, card: dict[str, Any]) -> Path:
    """Write `network`'s weights (safetensors) and its card (JSON) as path.safetensors / path.json."""
    from safetensors.torch import save_file

    from medrecon.io import atomic_path, write_json

    path = Path(path)
    weights = path.with_suffix(".safetensors")
    with atomic_path(weights) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}, str(tmp))
    card = {**card, "weights": weights.name}
    write_json(path.with_suffix(".json"), card)
    return path.with_suffix(".json")
