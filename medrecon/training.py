"""`medrecon train-prior`: train a 2D slice diffusion prior on NIfTI volumes, with MONAI.

Data: LoadImaged, EnsureChannelFirstd, Orientationd (RAS), percentile intensity scaling to the
prior's range [-1, 1] (0.5th and 99.5th percentiles), slices along `axis` resized to
`image_size`, a contiguous slab of slices held out for validation, random left-right flips.
Model: MONAI DiffusionModelUNet with the DDPM scheduler (epsilon prediction), AdamW, an
exponential moving average (EMA) of the weights. Every `checkpoint_every` steps the EMA weights
and a prior card (with the validation loss on the held-out slab) are written, with the training
state beside them for `resume`. Mixed precision (bfloat16 autocast) on CUDA.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from medrecon.errors import InputError
from medrecon.io import atomic_path
from medrecon.prior_card import build_unet, save_prior

CPU_ARCHITECTURE = {
    "class": "DiffusionModelUNet",
    "spatial_dims": 2,
    "in_channels": 1,
    "out_channels": 1,
    "channels": [32, 64, 64],
    "attention_levels": [False, True, True],
    "num_res_blocks": 1,
    "num_head_channels": 32,
}
SCHEDULE = {"scheduler": "DDPMScheduler", "num_train_timesteps": 1000, "schedule": "linear_beta"}


@dataclass
class TrainingReport:
    step: int
    train_loss: float
    validation_loss: float | None
    seconds: float
    card: Path
    history: list[dict] = field(default_factory=list)


def load_slices(
    paths: Sequence[str | Path], axis: int, image_size: int, holdout: tuple[int, int] | None
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """(train, validation) slices (N, 1, S, S) in [-1, 1], and a description of the data."""
    from monai.transforms import (
        Compose,
        EnsureChannelFirstd,
        LoadImaged,
        Orientationd,
        Resize,
        ScaleIntensityRangePercentilesd,
    )

    if not paths:
        raise InputError("train-prior needs at least one NIfTI volume")
    load = Compose(
        [
            LoadImaged(keys="image", image_only=True),
            EnsureChannelFirstd(keys="image"),
            Orientationd(keys="image", axcodes="RAS", labels=None),
            ScaleIntensityRangePercentilesd(
                keys="image", lower=0.5, upper=99.5, b_min=-1.0, b_max=1.0, clip=True
            ),
        ]
    )
    resize = Resize((image_size, image_size), mode="area")
    train, validation = [], []
    for path in paths:
        volume = load({"image": str(path)})["image"].as_tensor().float()  # (1, X, Y, Z)
        if volume.ndim != 4:
            raise InputError(f"{path}: expected a 3D volume, got shape {tuple(volume.shape[1:])}")
        slices = volume[0].movedim(axis, 0)  # (N, a, b) along the chosen axis
        for index, image in enumerate(slices):
            if float(image.max()) <= -0.99:  # empty (background-only) slices teach nothing
                continue
            sample = resize(image[None])  # (1, S, S)
            held = holdout is not None and holdout[0] <= index < holdout[1]
            (validation if held else train).append(sample)
    if not train:
        raise InputError("no training slices left (all empty or held out)")
    stack = torch.stack(train)
    val = torch.stack(validation) if validation else stack[:0]
    data = {
        "files": [Path(p).name for p in paths],
        "axis": axis,
        "holdout": list(holdout) if holdout else None,
        "train_slices": len(train),
        "validation_slices": len(validation),
    }
    return stack, val, data


def train_prior(
    volumes: Sequence[str | Path],
    out: str | Path,
    *,
    steps: int = 1000,
    image_size: int = 64,
    axis: int = 2,
    holdout: tuple[int, int] | None = None,
    batch_size: int = 16,
    lr: float = 2e-4,
    ema_decay: float = 0.999,
    checkpoint_every: int = 500,
    seed: int = 0,
    device: str | torch.device = "cpu",
    resume: bool = False,
    architecture: dict[str, Any] | None = None,
    data_notice: str = "",
    progress: Callable[[int, int, float], None] | None = None,
) -> TrainingReport:
    """Train (or resume) and write out.safetensors + out.json (EMA weights) and out.state.pt."""
    from monai.networks.schedulers import DDPMScheduler

    from medrecon.device import resolve_device

    out = Path(out)
    dev = resolve_device(device)
    train, validation, data = load_slices(volumes, axis, image_size, holdout)
    arch = dict(architecture or CPU_ARCHITECTURE)
    torch.manual_seed(seed)
    network = build_unet(arch).to(dev)
    ema = copy.deepcopy(network).eval()
    optimizer = torch.optim.AdamW(network.parameters(), lr=lr)
    scheduler = DDPMScheduler(**{k: v for k, v in SCHEDULE.items() if k != "scheduler"})
    abar = scheduler.alphas_cumprod.to(dev)
    gen = torch.Generator().manual_seed(seed)
    state_path = out.with_suffix(".state.pt")
    start_step, history = 0, []
    if resume:
        if not state_path.is_file():
            raise InputError(f"nothing to resume: {state_path} does not exist")
        state = torch.load(state_path, map_location=dev, weights_only=True)
        network.load_state_dict(state["network"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        start_step, history = state["step"], state["history"]
        if start_step >= steps:
            raise InputError(f"{state_path} is already at step {start_step}; ask for more steps")
    amp = dev.type == "cuda"
    began = time.perf_counter()
    loss_value, val_loss = float("nan"), None
    for step in range(start_step, steps):
        idx = torch.randint(0, len(train), (batch_size,), generator=gen)
        x0 = train[idx]
        flip = torch.rand(batch_size, generator=gen) < 0.5
        x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0).to(dev)
        t = torch.randint(0, len(abar), (batch_size,), generator=gen).to(dev)
        eps = torch.randn(x0.shape, generator=gen).to(dev)
        a = abar[t].reshape(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            loss = torch.nn.functional.mse_loss(network(x_t, t).float(), eps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            for e, p in zip(ema.parameters(), network.parameters(), strict=True):
                e.lerp_(p, 1 - ema_decay)
        loss_value = float(loss.detach())
        if progress is not None:
            progress(step + 1, steps, loss_value)
        if (step + 1) % checkpoint_every == 0 or step + 1 == steps:
            val_loss = validation_loss(ema, validation, abar, seed) if len(validation) else None
            history.append({"step": step + 1, "train_loss": loss_value, "validation_loss": val_loss})
            card = _card(arch, image_size, data, step + 1, history, data_notice)
            save_prior(out, ema, card)
            with atomic_path(state_path) as tmp:
                torch.save(
                    {
                        "network": network.state_dict(),
                        "ema": ema.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "generator": gen.get_state(),
                        "step": step + 1,
                        "history": history,
                    },
                    tmp,
                )
    return TrainingReport(
        steps, loss_value, val_loss, time.perf_counter() - began, out.with_suffix(".json"), history
    )


@torch.no_grad()
def validation_loss(network, slices: torch.Tensor, abar: torch.Tensor, seed: int) -> float:
    """Mean denoising loss on the held-out slices at fixed, seeded time steps and noise."""
    gen = torch.Generator().manual_seed(seed + 1)
    device = abar.device
    total = 0.0
    for start in range(0, len(slices), 32):
        x0 = slices[start : start + 32].to(device)
        t = torch.randint(0, len(abar), (len(x0),), generator=gen).to(device)
        eps = torch.randn(x0.shape, generator=gen).to(device)
        a = abar[t].reshape(-1, 1, 1, 1)
        total += float(
            torch.nn.functional.mse_loss(
                network((a.sqrt() * x0 + (1 - a).sqrt() * eps), t), eps, reduction="sum"
            )
        )
    return total / slices.numel()


def _card(arch, image_size, data, step, history, notice) -> dict[str, Any]:
    from medrecon import __version__

    return {
        "architecture": arch,
        "schedule": SCHEDULE,
        "prediction": "epsilon",
        "image_size": [image_size, image_size],
        "intensity": {"data_range": [-1.0, 1.0], "normalisation": "percentiles 0.5-99.5 -> [-1, 1], clipped"},
        "training": {
            "data": data,
            "steps": step,
            "history": history,
            "notice": notice,
            "medrecon": __version__,
        },
    }
