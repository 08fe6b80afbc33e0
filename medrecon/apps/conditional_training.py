"""`medrecon train-conditional`: train a conditional model (BCDM, Diff-Unfolding) on NIfTI volumes.

Data: the native-resolution patches of `medrecon train-prior --native` (same volumes, held-out and
validation slabs, augmentation, synthetic contrasts; `medrecon.apps.training.native_training_data`).
Each step draws a task (an operator family a plugin contributes through the
`medrecon_training_tasks` hook: `medrecon.TrainingTask`) and an operator recipe from its ranges,
builds the operator through the plugin host for the batch's shape, simulates y = A x0 + n with
noise of a random relative level, draws one diffusion time t and noise for x_t, and fits the
network's E[x0 | x_t, y] to x0 (mean squared error). The training loop (AdamW, EMA, checkpoints,
resume) is `medrecon.apps.training.run_training`. This module names no operator: the tasks do.

Methods: "bcdm" is trained per task (as the paper trains per problem; the shipped `bcdm-mri` on
the MRI plugin's `mri` task); "diff-unfolding" once across tasks (by default every installed one),
so that one model serves every operator. Both are the same network
(`medrecon.conditional.UnrolledPosterior`); the card records which and on what.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from medrecon.apps.training import TrainingReport, check_training_options, native_training_data, run_training
from medrecon.conditional import GAUSSIAN_PRIOR_VARIANCE, UNROLLED_ARCHITECTURE, Condition, build_conditional
from medrecon.contracts import TrainingTask
from medrecon.errors import InputError, PluginError, listing
from medrecon.host.plugin import PluginHost

#: the methods: the same network, trained per task (bcdm) or across tasks (diff-unfolding)
METHODS = ("bcdm", "diff-unfolding")
#: the conditionings a model can be trained with: their prior variance (None: flat)
CONDITIONINGS = {"gaussian": GAUSSIAN_PRIOR_VARIANCE, "flat": None}
#: the diffusion times the validation loss is measured at, on each task's validation operator
VALIDATION_TIMES = (999, 500, 150)


def build_tasks(
    names: Sequence[str], options: dict[str, dict[str, Any]] | None = None, host: PluginHost | None = None
) -> list[TrainingTask]:
    """The training tasks `names` from the installed plugins (`medrecon plugins` lists them, kind
    "task"), each built with its `options` (e.g. {"mri": {"acceleration": (4, 6)}}), checked
    against the task factory's parameters."""
    from medrecon.api import build_contribution
    from medrecon.host.plugin import default_host

    host = host or default_host()
    options = dict(options or {})
    if not names:
        raise InputError(
            f"choose the tasks to train on among the installed ones: {listing(host.components['task'])}"
        )
    stray = sorted(set(options) - set(names))
    if stray:
        raise InputError(
            f"options given for task(s) {stray} that are not trained on (tasks: {', '.join(names)})"
        )
    return [build_contribution("task", name, options.get(name, {}), TrainingTask, host) for name in names]


def method_tasks(method: str, host: PluginHost | None = None) -> list[str]:
    """The tasks a method trains on by default: Diff-Unfolding every installed task, by name (one
    model for all operators); BCDM is trained per task and has no default."""
    from medrecon.host.plugin import default_host

    if method not in METHODS:
        raise InputError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    installed = sorted((host or default_host()).components["task"])
    if method == "bcdm":
        raise InputError(
            f"BCDM is trained per task: give the task(s) with --tasks (installed: {', '.join(installed)})"
        )
    return installed


@lru_cache(maxsize=64)
def _operator_norm2(recipe_without_seed: str, shape: tuple[int, ...]) -> float:
    """||A||^2 of an operator family member (the seed does not change it much): one estimate per
    recipe and shape, by 20 power iterations."""
    from medrecon.numerics import operator_norm

    return float(operator_norm(_build(recipe_without_seed, shape), iterations=20)) ** 2


def _build(recipe_json: str, shape: tuple[int, ...]):
    from medrecon.api import build_operator
    from medrecon.host.recipe import ComponentRecipe

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
    if not norm2 > 0:
        raise InputError(f"training operator {recipe} measures nothing on slices of {shape[-2:]}")
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
    task_options: dict[str, dict[str, Any]] | None = None,
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
    init: str | Path | None = None,
    conditioning: str | None = None,
    data_notice: str = "",
    progress: Callable[[int, int, float], None] | None = None,
) -> TrainingReport:
    """Train (or resume) a conditional model; write out.safetensors + out.json (EMA weights and
    card) and out.state.pt every `checkpoint_every` steps (module docstring). `tasks` are training
    tasks of the installed plugins (default: `method_tasks(method)`), `task_options` their ranges
    by task name. `init` (a conditional model: shipped name or card path) starts the network and
    its EMA from that model's weights, with its architecture (fine-tuning; not with `resume`).
    `conditioning` is the network's start: "gaussian" (prior N(0, 1), `prior_variance` 1 in the
    architecture: operators with a null space, e.g. inpainting, stay trainable) or "flat" (BCDM's;
    the shipped models were trained so); None: the `init` model's, else the architecture's, else
    "gaussian"."""
    from medrecon.device import resolve_device
    from medrecon.prior_card import SCHEDULE, conditional_card, schedule_table

    if method not in METHODS:
        raise InputError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    check_training_options(steps=steps, batch_size=batch_size, checkpoint_every=checkpoint_every, lr=lr)
    chosen = build_tasks(tuple(tasks or method_tasks(method)), task_options)
    start = initial_model(init, method, resume) if init else None
    if conditioning is not None and conditioning not in CONDITIONINGS:
        raise InputError(f"--conditioning must be one of {', '.join(CONDITIONINGS)}, got {conditioning!r}")
    resumed = resumed_card(out, chosen) if resume else None
    if start is not None or resumed is not None:
        base, named = (start.card, f"the --init model {init}") if start else (resumed, f"the run in {out}")
        arch = json.loads(json.dumps(base["architecture"]))
        own = "flat" if arch.get("prior_variance") is None else "gaussian"
        if conditioning not in (None, own):
            raise InputError(
                f"--conditioning {conditioning}: {named} was trained with {own} "
                "conditioning, which its weights expect; leave --conditioning out"
            )
    else:
        arch = json.loads(json.dumps(architecture or UNROLLED_ARCHITECTURE))
        if conditioning is not None:
            arch["prior_variance"] = CONDITIONINGS[conditioning]
        arch.setdefault("prior_variance", CONDITIONINGS["gaussian"])
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
    network = build_conditional(arch)
    if start is not None:
        network.load_state_dict(start.network.state_dict())
    network = network.to(dev)
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
        made = conditional_card(
            method, arch, native.intensity, chosen, classes, native.card, native.data, step, history
        )
        if start is not None:
            made["training"]["initialised_from"] = {
                "model": start.card["name"],
                "steps": start.card.get("training", {}).get("steps"),
                "tasks": start.card.get("training", {}).get("tasks"),
            }
        elif resumed is not None and "initialised_from" in resumed["training"]:
            made["training"]["initialised_from"] = resumed["training"]["initialised_from"]
        return made

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


def resumed_card(out: str | Path, tasks: Sequence[TrainingTask]) -> dict[str, Any] | None:
    """The card the run being resumed wrote at its last checkpoint (None if there is none; then
    `run_training` says there is nothing to resume). Its architecture and conditioning, and the
    model it was initialised from, carry over; its tasks and their ranges must be the ones asked
    for, or the resumed steps would train another model."""
    path = Path(out).with_suffix(".json")
    if not path.is_file():
        return None
    card = json.loads(path.read_text())
    had = list(zip(card["training"]["tasks"], card["operators"], strict=True))
    asked = [(t.name, json.loads(json.dumps(t.ranges))) for t in tasks]
    if had != asked:
        raise InputError(
            f"--resume: the run in {path} trained on {json.dumps(had)}, this one asks for "
            f"{json.dumps(asked)}: resume with the run's --tasks and --task-option"
        )
    return card


def initial_model(init: str | Path, method: str, resume: bool):
    """The conditional model a fine-tuning run starts from (the `conditional` prior plugin reads
    and checks its card and weights); it must be of the method being trained."""
    from medrecon.api import build_component
    from medrecon.host.recipe import ComponentRecipe

    if resume:
        raise InputError("--init starts a new run from a model's weights; --resume continues one: give one")
    try:
        model = build_component("prior", ComponentRecipe("conditional", {"weights": str(init)}))
    except (InputError, PluginError) as err:
        raise InputError(f"--init {init}: {err}") from None
    if model.method != method:
        raise InputError(f"--init {init} is a {model.method or 'unnamed'} model, not {method}")
    return model


def operator_classes(tasks: Sequence[TrainingTask]) -> list[str]:
    """The operator classes the tasks build (what a model's card checks a run's operator against)."""
    return sorted({type(_build(json.dumps(t.draw(lambda: 0.0)), (1, 64, 64))).__name__ for t in tasks})


@torch.no_grad()
def conditional_validation_loss(
    network: torch.nn.Module,
    slices: torch.Tensor,
    abar: torch.Tensor,
    tasks: Sequence[TrainingTask],
    seed: int,
) -> float:
    """Mean squared error of the model's x0 estimate on whole validation slices (S, H, W), for each
    task's validation operator and each of VALIDATION_TIMES, with seeded noise (1% relative)."""
    gen = torch.Generator().manual_seed(seed + 1)
    total, count = 0.0, 0
    for task in tasks:
        cond = simulate_condition(task.validation, slices, 0.01, gen)
        for t in VALIDATION_TIMES:
            eps = torch.randn(slices.shape, generator=gen).to(slices.device)
            x_t = abar[t].sqrt() * slices + (1 - abar[t]).sqrt() * eps
            estimate = network(x_t[None], t, abar[t], cond)[0]
            total += float(torch.nn.functional.mse_loss(estimate, slices))
            count += 1
    return total / count
