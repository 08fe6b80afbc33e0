"""Diffusion networks and their prior cards, the one module that owns the format: what the
training commands write (`image_card`, `conditional_card`, `save_prior`) and the prior plugins read
(`find_card`, `card_kind`, `load_weights`, `build_unet`, `schedule_table`).

A prior card is JSON beside safetensors weights: architecture (MONAI DiffusionModelUNet
arguments), schedule (MONAI DDPMScheduler arguments), prediction type, image size, intensity
range, training data (and, for conditional models, the operator families and noise they were
trained on). This is model I/O, not physics, so it lives in the core.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from medrecon._version import __version__
from medrecon.errors import InputError

#: the DDPM noise table every shipped prior is trained with (MONAI DDPMScheduler arguments)
SCHEDULE = {"scheduler": "DDPMScheduler", "num_train_timesteps": 1000, "schedule": "linear_beta"}
#: the entries every card has
REQUIRED = ("architecture", "schedule", "weights")


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


def _training_record(data: dict[str, Any], steps: int, history: list[dict], **extra: Any) -> dict[str, Any]:
    return {
        "data": data,
        "steps": steps,
        "history": history,
        "notice": data.get("notice", ""),
        "medrecon": __version__,
        **extra,
    }


def image_card(
    architecture: dict[str, Any],
    image_size: int | None,
    intensity: dict[str, Any],
    data: dict[str, Any],
    steps: int,
    history: list[dict],
) -> dict[str, Any]:
    """The card of an image (or kernel) prior: epsilon prediction on the `SCHEDULE` table."""
    return {
        "architecture": architecture,
        "schedule": SCHEDULE,
        "prediction": "epsilon",
        "image_size": None if image_size is None else [image_size, image_size],
        "intensity": intensity,
        "training": _training_record(data, steps, history),
    }


def conditional_card(
    method: str,
    architecture: dict[str, Any],
    intensity: dict[str, Any],
    tasks: Sequence[Any],
    operator_classes: list[str],
    native: dict[str, Any],
    data: dict[str, Any],
    steps: int,
    history: list[dict],
) -> dict[str, Any]:
    """The card of a conditional model (BCDM, Diff-Unfolding): posterior-mean prediction, the
    training tasks' operator families, names, classes and relative noise ranges, and `native`
    (spacing and orientation entries of the training images)."""
    return {
        "kind": "conditional",
        "method": method,
        "architecture": architecture,
        "schedule": SCHEDULE,
        "prediction": "posterior_mean",
        "image_size": None,
        "intensity": {**intensity, "complex": False},
        "operators": [task.ranges for task in tasks],
        "operator_names": sorted({task.draw(lambda: 0.0)["name"] for task in tasks}),
        "operator_classes": operator_classes,
        "noise": {
            "relative_std": [list(task.noise) for task in tasks],
            "meaning": "std of the measurement noise / rms of the noiseless measurement",
        },
        **native,
        "training": _training_record(
            data,
            steps,
            history,
            tasks=[task.name for task in tasks],
            objective="mean squared error of E[x0 | x_t, y] against x0, one t per batch",
        ),
    }


def find_card(weights: str | Path, shipped: Path | None = None) -> tuple[dict[str, Any], Path]:
    """Read a prior card: a path to the .json, a folder holding one, or the name of a card in
    `shipped` (a plugin's weights folder). Checks the entries every card has."""
    path = Path(weights)
    if path.suffix == ".json" and path.is_file():
        card_path = path
    elif path.is_dir():
        cards = sorted(path.glob("*.json"))
        if len(cards) != 1:
            raise InputError(f"folder {path} must hold exactly one prior card (.json), found {len(cards)}")
        card_path = cards[0]
    elif shipped is not None and (shipped / f"{weights}.json").is_file():
        card_path = shipped / f"{weights}.json"
    else:
        names = sorted(p.stem for p in shipped.glob("*.json")) if shipped and shipped.is_dir() else []
        listed = ", ".join(repr(s) for s in names) or "none"
        raise InputError(
            f"no prior weights at {weights!r}: give the path of a prior card (.json beside its "
            f".safetensors) or the name of shipped weights ({listed})"
        )
    try:
        card = json.loads(card_path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"prior card {card_path} is not valid JSON: {err}") from None
    for key in REQUIRED:
        if key not in card:
            raise InputError(f"prior card {card_path} has no '{key}' entry")
    return card, card_path


def card_kind(card: dict[str, Any]) -> str:
    """What a prior card's network models: "kernel" for blur-kernel priors, else "image"."""
    training = card.get("training")
    data = training.get("data") if isinstance(training, dict) else None
    return data.get("kind", "image") if isinstance(data, dict) else "image"


def load_weights(network: torch.nn.Module, weight_file: Path, card_path: Path) -> None:
    """Load safetensors weights into `network`, refusing files that are missing, damaged, or that
    do not fit the card's architecture (saying how)."""
    from safetensors.torch import load_file

    if not weight_file.is_file():
        raise InputError(f"prior card {card_path} names weights {weight_file.name!r}, which are missing")
    try:
        state = load_file(str(weight_file))
    except Exception as err:  # safetensors raises its own error type for damaged files
        raise InputError(
            f"weights {weight_file} could not be read: the file is damaged or truncated ({err})"
        ) from None
    expected = network.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        example = (wrong or missing or unexpected)[0]
        raise InputError(
            f"weights {weight_file.name} do not fit the card's architecture: {len(missing)} missing, "
            f"{len(unexpected)} unexpected and {len(wrong)} differently shaped tensors, e.g. {example}"
        )
    network.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
