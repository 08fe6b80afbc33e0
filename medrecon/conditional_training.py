"""`medrecon train-conditional`: train a conditional model (BCDM, Diff-Unfolding) on NIfTI volumes.

Data: the native-resolution patches of `medrecon train-prior --native` (same volumes, held-out and
validation slabs, augmentation, synthetic contrasts; `medrecon.training.native_training_data`).
Each step draws a task (an operator family) and an operator recipe from its ranges (acceleration,
mask, coils; views or angle range; blur kernel), builds the operator through the plugin host for
the batch's shape, simulates y = A x0 + n with noise of a random relative level, draws one
diffusion time t and noise for x_t, and fits the network's E[x0 | x_t, y] to x0 (mean squared
error). The training loop (AdamW, EMA, checkpoints, resume) is `medrecon.training.run_training`.

Methods: "bcdm" is trained per task (by default MRI at 4-8x, as the paper trains per problem);
"diff-unfolding" once across MRI, CT and blur, so that one model serves every operator. Both are
the same network (`medrecon.conditional.UnrolledPosterior`); the card records which and on what.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from medrecon.conditional import UNROLLED_ARCHITECTURE, Condition, build_conditional
from medrecon.errors import InputError
from medrecon.training import TrainingReport, check_training_options, native_training_data, run_training


@dataclass(frozen=True)
class Task:
    """An operator family to train on: a recipe drawn from `draw(uniform)` (uniform() in [0, 1)),
    a relative noise level range (noise std / rms of y), and how the card describes its ranges."""

    name: str
    draw: Callable[[Callable[[], float]], dict[str, Any]]
    ranges: dict[str, Any]
    noise: tuple[float, float] = (1e-3, 3e-2)


def _pick(u: Callable[[], float], options: Sequence[Any]) -> Any:
    return options[min(int(u() * len(options)), len(options) - 1)]


def mri_task(acceleration: tuple[float, float] = (4.0, 8.0)) -> Task:
    lo, hi = acceleration

    def draw(u):
        return {
            "name": "mri-multicoil",
            "coils": _pick(u, (4, 8, 12)),
            "acceleration": round(lo + (hi - lo) * u(), 1),
            "mask_type": _pick(u, ("equispaced", "random")),
            "center_fraction": 0.08,
            "seed": int(u() * 1000),
        }

    ranges = {"acceleration": [lo, hi], "coils": [4, 8, 12], "mask_type": ["equispaced", "random"]}
    return Task("mri", draw, {"operator": "mri-multicoil", **ranges})


def ct_sparse_task(views: tuple[int, int] = (6, 36)) -> Task:
    lo, hi = views
    return Task(
        "ct-sparse",
        lambda u: {"name": "ct-parallel", "views": int(lo + (hi - lo + 1) * u())},
        {"operator": "ct-parallel", "views": [lo, hi]},
    )


def ct_limited_task(span: tuple[float, float] = (60.0, 150.0)) -> Task:
    lo, hi = span
    return Task(
        "ct-limited",
        lambda u: {
            "name": "ct-parallel",
            "angle_range": [0.0, float(round(lo + (hi - lo) * u()))],
            "angle_step": 1.0,
        },
        {"operator": "ct-parallel", "angle_range_degrees": [lo, hi], "angle_step": 1.0},
    )


def blur_task() -> Task:
    def draw(u):
        return {
            "name": "blind-deconv",
            "kernel_type": _pick(u, ("motion", "gaussian")),
            "kernel_size": _pick(u, (5, 7, 9)),
            "sigma": [round(0.6 + 1.8 * u(), 2), round(0.6 + 1.8 * u(), 2)],
            "angle": round(180 * u()),
            "seed": int(u() * 1000),
        }

    return Task(
        "blur",
        draw,
        {
            "operator": "blind-deconv (known kernel)",
            "kernel_type": ["motion", "gaussian"],
            "kernel_size": [5, 9],
        },
    )


TASKS = {"mri": mri_task, "ct-sparse": ct_sparse_task, "ct-limited": ct_limited_task, "blur": blur_task}
METHOD_TASKS = {"bcdm": ("mri",), "diff-unfolding": ("mri", "ct-sparse", "ct-limited", "blur")}
#: the operators the validation loss is measured on, one per task, on whole validation slices
VALIDATION_OPERATORS = {
    "mri": {"name": "mri-multicoil", "coils": 8, "acceleration": 6.0, "seed": 0},
    "ct-sparse": {"name": "ct-parallel", "views": 12},
    "ct-limited": {"name": "ct-parallel", "angle_range": [0.0, 100.0], "angle_step": 1.0},
    "blur": {"name": "blind-deconv", "kernel_type": "motion", "kernel_size": 9, "seed": 3},
}
VALIDATION_TIMES = (999, 500, 150)


def build_tasks(names: Sequence[str], **ranges: Any) -> list[Task]:
    """Tasks by name; `acceleration`, `views`, `angle_span` set their ranges (None: defaults)."""
    unknown = [n for n in names if n not in TASKS]
    if unknown or not names:
        raise InputError(f"unknown task(s) {unknown or names}: choose among {', '.join(TASKS)}")
    keyword = {"mri": "acceleration", "ct-sparse": "views", "ct-limited": "angle_span"}
    tasks = []
    for name in names:
        value = ranges.get(keyword.get(name, ""))
        if value is not None and not (len(value) == 2 and 0 < value[0] <= value[1]):
            raise InputError(f"--{keyword[name].replace('_', '-')} must be LOW:HIGH with 0 < LOW <= HIGH")
        tasks.append(TASKS[name](tuple(value)) if value is not None else TASKS[name]())
    return tasks


@lru_cache(maxsize=64)
def _operator_norm2(recipe_without_seed: str, shape: tuple[int, ...]) -> float:
    """||A||^2 of an operator family member (the seed does not change it much): one estimate per
    recipe and shape, by 20 power iterations."""
    from medrecon.numerics import operator_norm

    return float(operator_norm(_build(recipe_without_seed, shape), iterations=20)) ** 2


def _build(recipe_json: str, shape: tuple[int, ...]):
    from medrecon.api import build_operator
    from medrecon.recipe import ComponentRecipe

    return build_operator(ComponentRecipe.from_dict("operator", json.loads(recipe_json)), shape=shape)


def simulate_condition(
    recipe: dict[str, Any], x0: torch.Tensor, relative_noise: float, gen: torch.Generator
) -> Condition:
    """Build the operator for x0's shape (a stack of slices), simulate y with noise of std
    `relative_noise` times the rms of A x0, and return the network's Condition (||A||^2 cached
    per recipe without its seed)."""
    shape = tuple(x0.shape)
    op = _build(json.dumps(recipe, sort_keys=True), shape)
    unseeded = json.dumps({k: v for k, v in recipe.items() if k != "seed"}, sort_keys=True)
    norm2 = _operator_norm2(unseeded, shape)
    with torch.no_grad():
        clean = op(x0.to(op.domain_dtype) if op.domain_dtype.is_complex else x0)
        std = relative_noise * float(clean.abs().pow(2).mean().sqrt())
        if clean.is_complex():
            parts = torch.randn((2, *clean.shape), generator=gen).to(clean.device)
            noise = torch.complex(parts[0], parts[1]) / math.sqrt(2)
        else:
            noise = torch.randn(clean.shape, generator=gen).to(clean.device)
        y = clean + std * noise
    return Condition(op, y, op.adjoint(y), norm2, std**2)


def train_conditional(
    volumes: Sequence[str | Path],
    out: str | Path,
    *,
    method: str = "diff-unfolding",
    tasks: Sequence[str] | None = None,
    acceleration: tuple[float, float] | None = None,
    views: tuple[int, int] | None = None,
    angle_span: tuple[float, float] | None = None,
    tissue_maps: Sequence[str | Path] = (),
    holdout: tuple[int, int] | None = None,
    guard: int = 0,
    validation: tuple[int, int] | None = None,
    axes: Sequence[int] = (0, 1, 2),
    patch_sizes: Sequence[int] = (64, 96),
    size_weights: Sequence[float] = (0.6, 0.4),
    batch_size: int = 8,
    steps: int = 1000,
    lr: float = 3e-4,
    lr_decay: str = "constant",
    ema_decay: float = 0.999,
    checkpoint_every: int = 250,
    seed: int = 0,
    device: str | torch.device = "cpu",
    resume: bool = False,
    architecture: dict[str, Any] | None = None,
    data_notice: str = "",
    progress: Callable[[int, int, float], None] | None = None,
) -> TrainingReport:
    """Train (or resume) a conditional model; write out.safetensors + out.json (EMA weights and
    card) and out.state.pt every `checkpoint_every` steps (module docstring)."""
    from medrecon.device import resolve_device
    from medrecon.prior_card import schedule_table
    from medrecon.training import SCHEDULE

    if method not in METHOD_TASKS:
        raise InputError(f"--method must be one of {', '.join(METHOD_TASKS)}, got {method!r}")
    check_training_options(steps=steps, batch_size=batch_size, checkpoint_every=checkpoint_every, lr=lr)
    chosen = build_tasks(
        tuple(tasks or METHOD_TASKS[method]), acceleration=acceleration, views=views, angle_span=angle_span
    )
    arch = json.loads(json.dumps(architecture or UNROLLED_ARCHITECTURE))
    network_multiple = 2 ** (len(arch["unet"]["channels"]) - 1)
    native = native_training_data(
        volumes,
        out,
        multiple=network_multiple,
        tissue_maps=tissue_maps,
        holdout=holdout,
        guard=guard,
        validation=validation,
        axes=axes,
        patch_sizes=patch_sizes,
        size_weights=size_weights,
        batch_size=batch_size,
        data_notice=data_notice,
        resume=resume,
    )
    dev = resolve_device(device)
    torch.manual_seed(seed)
    network = build_conditional(arch).to(dev)
    abar = schedule_table(SCHEDULE).to(dev)
    classes = operator_classes(chosen)  # for the card: built once, not at every checkpoint

    def loss(net: torch.nn.Module, x0: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        def uniform() -> float:
            return float(torch.rand(1, generator=gen))

        task = chosen[min(int(uniform() * len(chosen)), len(chosen) - 1)]
        recipe = task.draw(uniform)
        lo, hi = task.noise
        relative = math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * uniform())
        slices = x0[:, 0]
        cond = simulate_condition(recipe, slices, relative, gen)
        t = int(torch.randint(0, len(abar), (1,), generator=gen))
        eps = torch.randn(slices.shape, generator=gen).to(dev)
        x_t = abar[t].sqrt() * slices + (1 - abar[t]).sqrt() * eps
        estimate = net(x_t[None], t, abar[t], cond)[0]
        return torch.nn.functional.mse_loss(estimate.float(), slices)

    def validate(ema: torch.nn.Module) -> float | None:
        if not len(native.validation):
            return None
        return conditional_validation_loss(ema, native.validation[:2, 0].to(dev), abar, chosen, seed)

    def card(step: int, history: list[dict]) -> dict[str, Any]:
        from medrecon import __version__

        return {
            "kind": "conditional",
            "method": method,
            "architecture": arch,
            "schedule": SCHEDULE,
            "prediction": "posterior_mean",
            "image_size": None,
            "intensity": {**native.intensity, "complex": False},
            "operators": [task.ranges for task in chosen],
            "operator_names": sorted({task.draw(lambda: 0.0)["name"] for task in chosen}),
            "operator_classes": classes,
            "noise": {
                "relative_std": [list(task.noise) for task in chosen],
                "meaning": "std of the measurement noise / rms of the noiseless measurement",
            },
            **native.card,
            "training": {
                "data": native.data,
                "tasks": [task.name for task in chosen],
                "steps": step,
                "history": history,
                "notice": native.data.get("notice", ""),
                "medrecon": __version__,
                "objective": "mean squared error of E[x0 | x_t, y] against x0, one t per batch",
            },
        }

    return run_training(
        network,
        out,
        sample=native.source.sample,
        loss=loss,
        validate=validate,
        card=card,
        steps=steps,
        lr=lr,
        lr_decay=lr_decay,
        ema_decay=ema_decay,
        checkpoint_every=checkpoint_every,
        seed=seed,
        device=dev,
        resume=resume,
        progress=progress,
    )


def operator_classes(tasks: Sequence[Task]) -> list[str]:
    """The operator classes the tasks build (what a model's card checks a run's operator against)."""
    return sorted({type(_build(json.dumps(t.draw(lambda: 0.0)), (1, 64, 64))).__name__ for t in tasks})


@torch.no_grad()
def conditional_validation_loss(
    network: torch.nn.Module, slices: torch.Tensor, abar: torch.Tensor, tasks: Sequence[Task], seed: int
) -> float:
    """Mean squared error of the model's x0 estimate on whole validation slices (S, H, W), for each
    task's validation operator and each of VALIDATION_TIMES, with seeded noise (1% relative)."""
    gen = torch.Generator().manual_seed(seed + 1)
    total, count = 0.0, 0
    for task in tasks:
        cond = simulate_condition(VALIDATION_OPERATORS[task.name], slices, 0.01, gen)
        for t in VALIDATION_TIMES:
            eps = torch.randn(slices.shape, generator=gen).to(slices.device)
            x_t = abar[t].sqrt() * slices + (1 - abar[t]).sqrt() * eps
            estimate = network(x_t[None], t, abar[t], cond)[0]
            total += float(torch.nn.functional.mse_loss(estimate, slices))
            count += 1
    return total / count
