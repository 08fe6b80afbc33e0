"""The one path through the house: measurement -> Problem -> sampler.run -> Reconstruction.

The CLI, the napari widget and the MONAI transforms call `simulate` and `reconstruct`; none of
them holds reconstruction logic of its own.
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medrecon.contracts import (
    CancelFn,
    ConditionalPrior,
    DiffusionPrior,
    MeasurementReader,
    Operator,
    Prior,
    Problem,
    ProgressFn,
    Reconstruction,
    Sampler,
    Step,
    drive,
)
from medrecon.device import resolve_device
from medrecon.errors import InputError, NumericalError, PluginError, RecipeError
from medrecon.host.params import CONTEXT_PARAMETERS, coerce_params, parameters_of
from medrecon.host.plugin import PluginHost, default_host
from medrecon.host.recipe import ComponentRecipe, Recipe, ResolvedComponent
from medrecon.io.bundle import Measurement
from medrecon.io.nifti import Volume

RecipeLike = Recipe | Mapping[str, Any] | str | Path
log = logging.getLogger(__name__)


def build_operator(
    recipe: ComponentRecipe | ResolvedComponent,
    *,
    shape: tuple[int, ...] | None = None,
    arrays: Mapping[str, Any] | None = None,
    measurement: torch.Tensor | None = None,
    host: PluginHost | None = None,
) -> Operator:
    """Build an operator from its recipe plus arrays from the data.

    A factory parameter `shape` is filled with the image shape and `measurement` with y (for
    self-calibrating operators) when the recipe does not set them.
    """
    owner = f"operator '{recipe.name}'"
    if isinstance(recipe, ResolvedComponent):  # looked up and checked already: only the data's part
        spec, checked = recipe.spec, dict(recipe.params)
    else:
        spec, checked = (host or default_host()).get("operator", recipe.name).spec, {}
    names = {p.name for p in parameters_of(spec.factory)}
    given = {**dict(recipe.params), **dict(arrays or {})}
    context = {"shape": None if shape is None else tuple(int(s) for s in shape), "measurement": measurement}
    for key in CONTEXT_PARAMETERS & names:
        if key not in given and context[key] is not None:
            given[key] = context[key]
    fresh = {k: v for k, v in given.items() if k not in checked or k in (arrays or {})}
    base = {k: v for k, v in checked.items() if k not in fresh}
    op = spec.factory(**base, **coerce_params(spec.factory, fresh, owner, allow_missing=frozenset(base)))
    if not isinstance(op, Operator):
        raise TypeError(f"{owner}: factory returned {type(op).__name__}, not a medrecon.Operator")
    return op


def measurement_operator(
    measurement: Measurement,
    recipe: ComponentRecipe | ResolvedComponent | None = None,
    *,
    y: torch.Tensor | None = None,
    host: PluginHost | None = None,
) -> Operator:
    """The operator a measurement was made with: its recipe (or `recipe`, the measurement's merged
    with a run's), its stored arrays, y for self-calibrating operators, and the image shape from
    its ground truth where the recipe sets none. The one place a measurement's operator is built
    (reconstruction, first look)."""
    recipe = recipe or measurement.operator
    truth, crop = measurement.ground_truth, measurement.crop
    shape = None if "shape" in recipe.params or truth is None or crop else truth.shape
    y = torch.as_tensor(measurement.y) if y is None else y
    return build_operator(recipe, shape=shape, arrays=measurement.arrays, measurement=y, host=host)


def first_look(measurement: Measurement, *, host: PluginHost | None = None) -> tuple[np.ndarray, str]:
    """A direct image of a measurement, for a viewer: its operator's `first_look` (filtered
    back-projection where the operator has one, else the adjoint), as magnitudes for complex
    images and centre-cropped like a reconstruction; and the operator's name for it."""
    y = torch.as_tensor(measurement.y)
    op = measurement_operator(measurement, y=y, host=host)
    with torch.no_grad():
        image = op.first_look(y)
    image = (image.abs() if image.is_complex() else image).numpy()
    if measurement.crop:
        from medrecon.io.bundle import centre_crop

        image = np.ascontiguousarray(centre_crop(image, measurement.crop))
    return image, op.first_look_name


def build_component(
    section: str, recipe: ComponentRecipe | ResolvedComponent | None, host: PluginHost | None = None
):
    """Build a prior or sampler from its recipe, or from its section of `Recipe.resolve` (None for
    a missing prior)."""
    if recipe is None:
        return None
    if isinstance(recipe, ResolvedComponent):  # looked up and checked already, less what data bring
        owner = f"{section} '{recipe.name}'"
        coerce_params(recipe.spec.factory, {}, owner, allow_missing=frozenset(recipe.params))
        return recipe.spec.factory(**recipe.params)
    host = host or default_host()
    spec = host.get(section, recipe.name).spec
    return spec.factory(**coerce_params(spec.factory, recipe.params, f"{section} '{recipe.name}'"))


def build_contribution(
    kind: str, name: str, params: Mapping[str, Any], expected: type, host: PluginHost | None = None
):
    """A plugin's training task or dataset (`kind` "task" or "dataset") built like any component,
    its parameters checked against the factory; an unknown name, or a factory giving something
    other than `expected`, is an InputError."""
    try:
        made = build_component(kind, ComponentRecipe(name, dict(params)), host)
    except PluginError as err:
        raise InputError(str(err)) from None
    if not isinstance(made, expected):
        raise InputError(f"{kind} '{name}' gave {type(made).__name__}, not a medrecon.{expected.__name__}")
    return made


def simulate(
    volume: np.ndarray | torch.Tensor | Volume | str | Path,
    operator: ComponentRecipe | Mapping[str, Any] | str,
    *,
    noise_std: float,
    seed: int = 0,
    device: str | torch.device = "cpu",
    affine: np.ndarray | None = None,
    keep_ground_truth: bool = True,
    phase: str = "none",
    host: PluginHost | None = None,
) -> Measurement:
    """Simulate a measurement of `volume` ((D, H, W) or (H, W); or a `Volume`, or the path of a
    NIfTI, DICOM series, NRRD or MetaImage volume, whose affine is kept) with the named operator.

    `phase = "smooth"` turns the (magnitude) volume into a complex image with a smooth background
    phase, as real MR images have (seeded by `seed`); the operator must then take complex images
    (`complex_image = true` for mri-multicoil) and the stored ground truth is complex."""
    host = host or default_host()
    check_noise_and_seed(noise_std, seed)
    op_recipe = Recipe(operator=_operator_recipe(operator)).resolve(host)["operator"]
    if phase not in ("none", "smooth"):
        raise InputError(f"phase must be 'none' or 'smooth', got {phase!r}")
    if isinstance(volume, (str, Path)):  # a file or DICOM folder, placed by its own affine
        from medrecon.io import load_volume

        loaded = load_volume(volume)
        volume, affine = loaded.data, loaded.affine if affine is None else affine
    elif isinstance(volume, Volume):
        volume, affine = volume.data, volume.affine if affine is None else affine
    x = _as_image(volume)
    if phase == "smooth":
        from medrecon.samples import smooth_phase

        x = x * torch.exp(1j * torch.as_tensor(smooth_phase(tuple(x.shape), seed)))
    dev = resolve_device(device)
    op = build_operator(op_recipe, shape=tuple(x.shape), host=host).to(dev)
    if x.is_complex() and not op.domain_dtype.is_complex:
        why = "phase = 'smooth' makes a complex image" if phase == "smooth" else "the volume is complex"
        can = any(p.name == "complex_image" for p in op_recipe.spec.parameters)
        fix = "set complex_image = true" if can else "it has no complex_image option: use real images"
        raise InputError(
            f"{why}, but operator '{op_recipe.name}' takes real images: its imaginary part would be "
            f"lost; give the operator complex images ({fix})"
        )
    if op.domain_dtype.is_complex and not x.is_complex():
        x = x.to(op.domain_dtype)
    y = op.simulate(x.to(dev), noise_std, seed)
    params = dict(op_recipe.params)
    if "shape" in {p.name for p in parameters_of(host.get("operator", op_recipe.name).spec.factory)}:
        params.setdefault("shape", list(op.domain_shape))
    return Measurement(
        y=y.cpu().numpy(),
        operator=ComponentRecipe(op_recipe.name, params),
        noise_std=float(noise_std),
        arrays={k: v.detach().cpu().numpy() for k, v in op.arrays().items()},
        ground_truth=x.numpy() if keep_ground_truth else None,
        affine=affine,
        attrs={
            "simulation": {
                "seed": seed,
                "noise_std": float(noise_std),
                "phase": phase,
                "operator": op.describe(),
            }
        },
    )


def reconstruct(
    recipe: RecipeLike,
    measurement: Measurement,
    *,
    seed: int = 0,
    device: str | torch.device = "auto",
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    noise_std: float | None = None,
    host: PluginHost | None = None,
) -> Reconstruction:
    """Reconstruct a measurement with the recipe's sampler (and prior); the bundle brings the operator.

    Everything is validated and the pairing checked before any work starts. `progress` sees each
    Step; `cancel()` returning True stops between steps (raising Cancelled).
    """
    steps = reconstruct_steps(recipe, measurement, seed=seed, device=device, noise_std=noise_std, host=host)
    return drive(steps, progress, cancel)


def run_steps(
    recipe: RecipeLike,
    source: Measurement | np.ndarray | torch.Tensor | Volume | str | Path,
    *,
    noise_std: float = 0.0,
    seed: int = 0,
    device: str | torch.device = "auto",
    phase: str = "none",
    host: PluginHost | None = None,
) -> Generator[Step, None, Reconstruction]:
    """One run from what a front end holds (the napari widget's layer): a loaded `Measurement`,
    which brings its operator and noise level (the recipe's [operator] says how to simulate and is
    left out), or a volume (array, `Volume` or path), first simulated with the recipe's [operator],
    `noise_std`, `seed` and `phase` (on the CPU when `device` is "auto"). Yields each Step and
    returns the Reconstruction, as `reconstruct_steps`."""
    recipe = Recipe.load(recipe)
    if not isinstance(source, Measurement):
        if recipe.operator is None:
            raise RecipeError("simulating a volume needs the recipe's [operator] (or give a measurement)")
        source = simulate(
            source,
            recipe.operator,
            noise_std=noise_std,
            seed=seed,
            device="cpu" if str(device) == "auto" else device,
            phase=phase,
            host=host,
        )
    steps = reconstruct_steps(recipe.without("operator"), source, seed=seed, device=device, host=host)
    return (yield from steps)


def reconstruct_steps(
    recipe: RecipeLike,
    measurement: Measurement,
    *,
    seed: int = 0,
    device: str | torch.device = "auto",
    noise_std: float | None = None,
    host: PluginHost | None = None,
) -> Generator[Step, None, Reconstruction]:
    """The generator form of `reconstruct`: yields one Step per sampler iteration and returns the
    Reconstruction. Validation happens on the first `next()`, before any sampler work. A consumer
    cancels by closing it (as napari's workers do)."""
    host = host or default_host()
    check_noise_and_seed(0.0 if noise_std is None else noise_std, seed)
    if not isinstance(measurement, Measurement):
        raise InputError(
            f"reconstruct takes a medrecon.Measurement (from medrecon.simulate or medrecon.load_bundle), "
            f"got {type(measurement).__name__}"
        )
    recipe = Recipe.load(recipe)
    if recipe.sampler is None:
        raise RecipeError("the recipe has no [sampler] section: name the sampler to run")
    if recipe.operator is not None and recipe.operator.name != measurement.operator.name:
        raise RecipeError(
            f"the recipe's operator '{recipe.operator.name}' differs from the measurement's "
            f"'{measurement.operator.name}'; leave [operator] out to use the measurement's"
        )
    op_params = dict(measurement.operator.params)
    if recipe.operator is not None:
        # what the measurement was made with: its stored parameters, the factory's defaults for the rest
        spec = host.get("operator", measurement.operator.name).spec
        made_with = {p.name: p.default for p in parameters_of(spec.factory) if not p.required}
        made_with.update(op_params)
        free = set(getattr(spec.factory, "implementation_parameters", ()))  # how, not what, it computes
        changed = {
            k: v
            for k, v in recipe.operator.params.items()
            if k in made_with and k not in free and made_with[k] != v
        }
        if changed and measurement.arrays:
            key = sorted(changed)[0]
            raise RecipeError(
                f"operator parameter {key}={changed[key]!r} differs from the measurement's "
                f"{key}={made_with[key]!r}: the measurement was made with its operator (its "
                f"{', '.join(sorted(measurement.arrays))} are stored with it) and cannot be changed; "
                "leave it out, or simulate a new measurement"
            )
        op_params.update(recipe.operator.params)
    recipe = recipe.replace(operator=ComponentRecipe(measurement.operator.name, op_params))
    resolved = recipe.resolve(host)  # each component looked up and checked once for the run
    recipe = Recipe.from_resolved(resolved)
    sigma = measurement.noise_std if noise_std is None else noise_std
    if sigma is None:
        raise InputError(
            "the measurement's noise level is unknown (its file stores none and its reader could not "
            "estimate it); give it with --noise-std "
            "or noise_std=..., in the units of y"
        )
    dev = resolve_device(device)
    y = torch.as_tensor(measurement.y).to(dev)
    truth, crop = measurement.ground_truth, measurement.crop
    operator = measurement_operator(measurement, resolved["operator"], y=y, host=host).to(dev)
    image_shape = tuple(operator.domain_shape)
    if crop:
        image_shape = (*image_shape[:-2], *(min(c, n) for c, n in zip(crop, image_shape[-2:], strict=True)))
    if truth is not None and tuple(truth.shape) != image_shape:
        raise InputError(
            f"the measurement's ground_truth has shape {tuple(truth.shape)}, but its operator's images "
            f"are {image_shape}: the ground truth does not belong to this measurement"
        )
    prior: Prior | None = build_component("prior", resolved.get("prior"), host)
    if isinstance(prior, torch.nn.Module):
        prior = prior.to(dev)
    sampler: Sampler = build_component("sampler", resolved["sampler"], host)
    sampler.name = sampler.name or recipe.sampler.name
    problem = Problem(operator, y, sigma)
    warnings, notes = [], []
    volume = len(operator.domain_shape) == 3
    if isinstance(prior, DiffusionPrior) and measurement.affine is not None and volume:
        note = prior.orient(measurement.affine)  # slices as the prior was trained on them
        if note:
            log.info(note)
            notes.append(note)
    spacing_note = spacing_warning(prior, measurement.affine, len(operator.domain_shape))
    if spacing_note:
        log.warning(spacing_note)
        warnings.append(spacing_note)
    steps = sampler.run_steps(problem, prior, seed=seed)
    while True:
        # Samplers that need gradients (DPS, MCG) open torch.enable_grad() themselves. Grad mode is
        # switched off per step, never across a yield, so it cannot leak into the caller.
        with torch.no_grad():
            try:
                step = next(steps)
            except StopIteration as stop:
                result = stop.value
                break
        if step.estimate is not None:
            check_finite(step.estimate, recipe.sampler.name, f"step {step.index + 1} of {step.total}")
        yield step
    for role, value in (("image", result.image), ("std", result.std), *result.extras.items()):
        if value is not None:
            check_finite(value, recipe.sampler.name, f"the final {role}")
    result.info.update(
        recipe=recipe.to_dict(),
        operator=operator.describe(),
        seed=seed,
        device=str(dev),
        noise_std=sigma,
        versions=versions(resolved),
    )
    result.info.setdefault("nfe", 0)
    if crop:
        result = crop_reconstruction(result, crop)
        result.info["crop"] = f"centre-cropped to {crop[0]} x {crop[1]} (the file's recon matrix)"
    if "undersampled" in measurement.attrs:  # retrospectively, by the file's reader
        result.info["undersampled"] = measurement.attrs["undersampled"]
    if noise_std is None and "noise_std_source" in measurement.attrs:
        result.info["noise_std_source"] = measurement.attrs["noise_std_source"]
    if truth is not None:
        from medrecon.metrics import psnr, ssim

        image = result.image.detach().cpu().numpy()
        scores = {"psnr_db": round(psnr(truth, image), 3), "ssim": round(ssim(truth, image), 4)}
        result.info["metrics"] = scores
        scored = _reader_metrics(measurement, truth, image, host)
        warnings += scored.pop("warnings", [])
        result.info.update(scored)
    if notes:
        result.info["orientation"] = notes[0]
    if warnings:
        result.info["warnings"] = [*result.info.get("warnings", []), *warnings]
    return result


def check_noise_and_seed(noise_std: Any, seed: Any) -> None:
    """noise_std a finite number >= 0 and seed an integer, or a clear InputError."""
    if isinstance(noise_std, bool) or not isinstance(noise_std, int | float | np.integer | np.floating):
        raise InputError(
            f"noise_std must be a finite number >= 0 (in the units of y), got {noise_std!r} "
            f"({type(noise_std).__name__})"
        )
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise InputError(f"seed must be an integer, got {seed!r} ({type(seed).__name__})")


def _reader_metrics(measurement: Measurement, truth, image, host: PluginHost) -> dict[str, dict]:
    """{"metrics_<reader>": scores} in the convention of the format the measurement was read from
    (a dataset's challenge metrics), where its reader has one and is installed."""
    name = measurement.attrs.get("reader")
    if not isinstance(name, str) or name not in host.components["reader"]:
        return {}
    try:  # the reconstruction is done: a reader's scoring must not lose it
        scores = build_contribution("reader", name, {}, MeasurementReader, host).metrics(truth, image)
    except Exception as err:
        note = f"reader '{name}' could not score the result ({type(err).__name__}: {err})"
        log.warning(note)
        return {"warnings": [note]}
    return {} if scores is None else {f"metrics_{name}": scores}


def crop_reconstruction(result: Reconstruction, crop: tuple[int, int]) -> Reconstruction:
    """The image, std map and samples centre-cropped in plane to `crop` (the file's recon matrix)."""
    from medrecon.io.bundle import centre_crop

    def cut(value):
        return None if value is None else centre_crop(value, crop).contiguous()

    return Reconstruction(
        cut(result.image),
        std=cut(result.std),
        samples=cut(result.samples),
        extras=dict(result.extras),
        info=result.info,
    )


def check_finite(value: torch.Tensor, sampler: str, where: str) -> None:
    """Raise NumericalError, naming the sampler and the step, if `value` holds NaN or Inf."""
    finite = torch.isfinite(torch.view_as_real(value) if value.is_complex() else value)
    if bool(finite.all()):
        return
    bad = int((~finite).sum())
    raise NumericalError(
        f"sampler '{sampler}' produced {bad} NaN or infinite value(s) at {where}; the run was stopped "
        "and nothing was written. Likely causes: a step size too large for this problem (zeta, alpha, "
        "eta, rho), too few or too many CG iterations, or an operator whose adjoint is wrong "
        "(check it with medrecon.adjoint_test)"
    )


#: how far (relative) the data's pixel size may be from a prior's before a warning
SPACING_TOLERANCE = 0.25


def in_plane_spacing(affine: np.ndarray, slice_axis: int, ndim: int) -> tuple[float, float]:
    """The pixel size (mm) of the two in-plane axes of medrecon's (D, H, W) layout (or (H, W)) under
    a NIfTI affine: layout axis a is the affine's column 2 - a (2D images: H is j, W is i)."""
    columns = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    if ndim == 2:
        return float(columns[1]), float(columns[0])
    in_plane = [a for a in range(3) if a != slice_axis]
    return float(columns[2 - in_plane[0]]), float(columns[2 - in_plane[1]])


def spacing_warning(prior: Prior | None, affine: np.ndarray | None, ndim: int) -> str | None:
    """A sentence when the data's in-plane pixel size is more than 25% from the prior's, else None."""
    if not isinstance(prior, DiffusionPrior | ConditionalPrior):  # only trained models know theirs
        return None
    trained = prior.pixel_spacing
    if trained is None or affine is None or ndim not in (2, 3):
        return None
    data = in_plane_spacing(affine, prior.slice_axis, ndim)
    if all(abs(d / t - 1) <= SPACING_TOLERANCE for d, t in zip(data, trained, strict=True)):
        return None
    name = prior.card.get("name") or type(prior).__name__
    return (
        f"the data's in-plane pixel size ({data[0]:.3g} x {data[1]:.3g} mm) is more than "
        f"{SPACING_TOLERANCE:.0%} away from the {trained[0]:.3g} x {trained[1]:.3g} mm prior {name!r} was "
        "trained at: the prior's anatomy is at the wrong scale; resample the data or use a prior "
        "trained at this resolution"
    )


def _as_image(volume: Any) -> torch.Tensor:
    """A (D, H, W) or (H, W) float32 (or complex64) tensor from an array-like, or a clear error."""
    if isinstance(volume, torch.Tensor):
        volume = volume.detach().cpu().numpy()
    try:
        array = np.asarray(volume)
    except (TypeError, ValueError) as err:
        raise InputError(
            f"volume must be an array (D, H, W) or (H, W), got {type(volume).__name__} ({err})"
        ) from None
    if array.dtype.kind not in "biufc" or array.ndim not in (2, 3):
        raise InputError(
            f"volume must be a numeric array (D, H, W) or (H, W), got {type(volume).__name__} of "
            f"dtype {array.dtype} and shape {array.shape}"
        )
    if not np.isfinite(array).all():
        raise InputError("volume holds NaN or Inf values; it must be finite")
    kind = np.complex64 if np.iscomplexobj(array) else np.float32
    return torch.from_numpy(np.ascontiguousarray(array.astype(kind)))


def parameters_of_operator(name: str, host: PluginHost | None = None) -> set[str]:
    """The parameter names of a registered operator's factory."""
    host = host or default_host()
    return {p.name for p in parameters_of(host.get("operator", name).spec.factory)}


def versions(resolved: Mapping[str, ResolvedComponent]) -> dict[str, Any]:
    """Versions of Python, torch, medrecon and of each component's distribution."""
    from medrecon._version import __version__

    out: dict[str, Any] = {
        "medrecon": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    for section, r in resolved.items():
        p = r.component.provider
        out[f"{section}:{r.name}"] = f"{p.distribution or p.plugin} {p.version or ''}".strip()
    return out


def _operator_recipe(operator: ComponentRecipe | Mapping[str, Any] | str) -> ComponentRecipe:
    if isinstance(operator, ComponentRecipe):
        return operator
    return ComponentRecipe.from_dict("operator", operator)
