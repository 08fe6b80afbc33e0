"""`medrecon train-prior`: train a 2D slice diffusion prior on NIfTI volumes, with MONAI.

Data: LoadImaged, EnsureChannelFirstd, Orientationd (RAS), percentile intensity scaling to the
prior's range [-1, 1] (0.5th and 99.5th percentiles), slices along `axis` cropped to the volume's
in-plane foreground, padded to a square and resized to `image_size`, a contiguous slab of slices
held out for validation (with optional guard slices around it that neither side uses), light
augmentation (left-right flips, small rotations and zooms). Model: MONAI DiffusionModelUNet with the
DDPM scheduler (epsilon prediction), AdamW, an exponential moving average (EMA) of the weights
(decay warmed up as (1 + n) / (10 + n)). Every `checkpoint_every` steps the EMA weights and a prior
card (with the validation loss on the held-out slab) are written, with the training state beside
them for `resume`. Mixed precision (bfloat16 autocast) on CUDA.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from medrecon.errors import InputError
from medrecon.io import atomic_path
from medrecon.prior_card import SCHEDULE, build_unet, image_card, save_prior, size_multiple

log = logging.getLogger(__name__)

CPU_ARCHITECTURE = {
    "class": "DiffusionModelUNet",
    "spatial_dims": 2,
    "in_channels": 1,
    "out_channels": 1,
    "channels": [32, 64, 64],
    "attention_levels": [False, False, True],
    "num_res_blocks": 1,
    "num_head_channels": 32,
}
#: the native-resolution image prior's network: fully convolutional (no attention anywhere, the
#: middle block's included), four levels (sizes padded to multiples of 8), so that its cost per
#: pixel does not depend on the slice size (measured: 0.93 of the 64 x 64 cost per pixel at 256 x 256)
NATIVE_ARCHITECTURE = {
    "class": "DiffusionModelUNet",
    "spatial_dims": 2,
    "in_channels": 1,
    "out_channels": 1,
    "channels": [32, 64, 96, 128],
    "attention_levels": [False, False, False, False],
    "mid_block_attention": False,
    "num_res_blocks": 1,
    "norm_num_groups": 16,
    "num_head_channels": 32,
}


class BatchSource(Protocol):
    """Anything that draws training batches (B, 1, H, W) from a generator (see native_data)."""

    def sample(self, gen: torch.Generator) -> torch.Tensor: ...


@dataclass
class TrainingReport:
    step: int
    train_loss: float
    validation_loss: float | None
    seconds: float
    card: Path
    history: list[dict] = field(default_factory=list)


def load_volume(path: str | Path) -> tuple[torch.Tensor, np.ndarray]:
    """A NIfTI volume in RAS orientation, intensities 0.5-99.5 percentiles -> [-1, 1]: (X, Y, Z),
    and its voxel-to-world affine after reorientation."""
    from monai.transforms import (
        Compose,
        EnsureChannelFirstd,
        LoadImaged,
        Orientationd,
        ScaleIntensityRangePercentilesd,
    )

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
    volume = load({"image": str(path)})["image"]
    if volume.ndim != 4:
        raise InputError(f"{path}: expected a 3D volume, got shape {tuple(volume.shape[1:])}")
    return volume[0].as_tensor().float(), np.asarray(volume.affine, dtype=np.float64)


def square_slices(volume: torch.Tensor, axis: int, image_size: int) -> tuple[torch.Tensor, dict[str, Any]]:
    """Slices of a RAS volume (X, Y, Z) along its voxel axis `axis` as (N, 1, S, S): the in-plane
    foreground box of the whole volume, padded with background to a square (aspect ratio kept) and
    resized to S x S (area averaging).

    The same box serves every slice, so the slices stay a volume with one in-plane pixel size,
    returned in the geometry (`pixel_scale`: input voxels per output pixel)."""
    from monai.transforms import Resize

    # medrecon's array layout of a NIfTI (i, j, k) volume is (D, H, W) = (k, j, i) (see medrecon.io),
    # so slices are taken from that layout: the prior then sees images as reconstructions present them.
    slices = volume.permute(2, 1, 0).movedim(2 - axis, 0)  # (N, a, b)
    foreground = (slices > -0.99).any(dim=0)
    if not foreground.any():
        raise InputError("the volume is empty (nothing above the background level)")
    rows = torch.nonzero(foreground.any(dim=1)).flatten()
    cols = torch.nonzero(foreground.any(dim=0)).flatten()
    box = [int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1]
    cropped = slices[:, box[0] : box[1], box[2] : box[3]]
    side = max(cropped.shape[1:])
    pad_a, pad_b = side - cropped.shape[1], side - cropped.shape[2]
    padding = (pad_b // 2, pad_b - pad_b // 2, pad_a // 2, pad_a - pad_a // 2)
    square = torch.nn.functional.pad(cropped, padding, value=-1.0)
    resized = Resize((image_size, image_size), mode="area")(square).as_tensor()
    geometry = {
        "box": box,
        "square_side": side,
        "pixel_scale": side / image_size,
        "origin": [box[0] - padding[2], box[2] - padding[0]],  # input pixel at the square's corner
    }
    return resized[:, None].float(), geometry


def holdout_volume(
    path: str | Path, axis: int, image_size: int, holdout: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The held-out slab exactly as the prior sees it, as a volume in medrecon's (D, H, W) layout
    with intensities in [0, 1], and the affine that places it over the input volume (in-plane
    voxels `pixel_scale` times larger, same slice positions)."""
    volume, affine = load_volume(path)
    slices, geometry = square_slices(volume, axis, image_size)
    if not 0 <= holdout[0] < holdout[1] <= len(slices):
        raise InputError(f"holdout {holdout[0]}:{holdout[1]} is outside the {len(slices)} slices")
    slab = ((slices[holdout[0] : holdout[1], 0] + 1) / 2).clamp(0, 1)
    layout_axis = 2 - axis  # the slice axis in (D, H, W)
    data = slab.movedim(0, layout_axis).numpy().astype(np.float32)
    scale = geometry["pixel_scale"]
    in_plane = [n for n in range(3) if n != layout_axis]
    to_input = np.eye(4)  # output voxel (i, j, k) -> input voxel (i, j, k); NIfTI axis = 2 - layout axis
    to_input[axis, axis], to_input[axis, 3] = 1.0, holdout[0]
    for n, corner in zip(in_plane, geometry["origin"], strict=True):
        nifti_axis = 2 - n
        to_input[nifti_axis, nifti_axis] = scale
        to_input[nifti_axis, 3] = corner + 0.5 * scale - 0.5  # pixel centres of the area resize
    return data, affine @ to_input


def write_holdout(
    volume: str | Path, path: str | Path, axis: int, image_size: int, holdout: tuple[int, int]
) -> Path:
    """Write the held-out slab (`holdout_volume`) as NIfTI: the evaluation volume of the prior."""
    from medrecon.io import save_nifti

    data, affine = holdout_volume(volume, axis, image_size, holdout)
    return save_nifti(path, data, affine)


def load_slices(
    paths: Sequence[str | Path],
    axis: int,
    image_size: int,
    holdout: tuple[int, int] | None,
    guard: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """(train, validation) slices (N, 1, S, S) in [-1, 1], and a description of the data.

    Slices with index in `holdout` go to validation only; `guard` slices on either side of the
    slab are used by neither, so that training never sees the held-out slab's direct neighbours."""
    if not paths:
        raise InputError("train-prior needs at least one NIfTI volume")
    train, validation, geometries = [], [], []
    for path in paths:
        slices, geometry = square_slices(load_volume(path)[0], axis, image_size)
        geometries.append(geometry)
        for index, image in enumerate(slices):
            if float(image.max()) <= -0.99:  # empty (background-only) slices teach nothing
                continue
            if holdout is not None and holdout[0] <= index < holdout[1]:
                validation.append(image)
            elif holdout is None or not holdout[0] - guard <= index < holdout[1] + guard:
                train.append(image)
    if not train:
        raise InputError("no training slices left (all empty or held out)")
    stack = torch.stack(train)
    val = torch.stack(validation) if validation else stack[:0]
    data = {
        "files": [Path(p).name for p in paths],
        "axis": axis,
        "holdout": list(holdout) if holdout else None,
        "holdout_guard": guard if holdout else 0,
        "train_slices": len(train),
        "validation_slices": len(validation),
        "geometry": geometries,
    }
    return stack, val, data


def augment(x0: torch.Tensor, gen: torch.Generator, degrees: float = 10.0, zoom: float = 0.1) -> torch.Tensor:
    """Light augmentation of a batch in [-1, 1]: left-right flips, rotations of up to `degrees` and
    zooms of up to +-`zoom`, with background (-1) filling what comes in from outside."""
    n = len(x0)
    flip = torch.rand(n, generator=gen) < 0.5
    angle = (torch.rand(n, generator=gen) * 2 - 1) * torch.pi * degrees / 180
    scale = 1 + (torch.rand(n, generator=gen) * 2 - 1) * zoom
    sign = torch.where(flip, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = sign * torch.cos(angle) / scale
    theta[:, 0, 1] = -torch.sin(angle) / scale
    theta[:, 1, 0] = sign * torch.sin(angle) / scale
    theta[:, 1, 1] = torch.cos(angle) / scale
    grid = torch.nn.functional.affine_grid(theta.to(x0.device), list(x0.shape), align_corners=False)
    warped = torch.nn.functional.grid_sample(x0 + 1, grid, mode="bilinear", align_corners=False)
    return warped - 1


def check_training_options(**options: float) -> None:
    """Refuse training options that cannot work, naming the option: steps, batch size, checkpoint
    interval >= 1, a positive learning rate."""
    for name, value in options.items():
        ok = value > 0 if name == "lr" else value >= 1 and float(value).is_integer()
        if not ok:
            flag = "--" + name.replace("_", "-")
            expected = "a positive number" if name == "lr" else "an integer >= 1"
            raise InputError(f"{flag} must be {expected}, got {value}")


def check_volume_paths(paths: Sequence[str | Path]) -> None:
    """Every training volume must exist and be NIfTI, before any loading."""
    for path in paths:
        p = Path(path)
        if not p.is_file():
            raise InputError(f"training volume {p} does not exist (give NIfTI files or folders holding them)")
        if not str(p).endswith((".nii", ".nii.gz")):
            raise InputError(f"training volume {p} is not NIfTI: expected .nii or .nii.gz")


def train_prior(
    volumes: Sequence[str | Path],
    out: str | Path,
    *,
    image_size: int = 64,
    axis: int = 2,
    holdout: tuple[int, int] | None = None,
    guard: int = 0,
    data_notice: str = "",
    **options: Any,
) -> TrainingReport:
    """Train (or resume) an image prior on slices of NIfTI volumes; see `fit_prior` for `options`."""
    check_volume_paths(volumes)
    train, validation, data = load_slices(volumes, axis, image_size, holdout, guard)
    data["notice"] = data_notice
    if holdout is not None and len(volumes) == 1 and not options.get("resume"):
        write_holdout(volumes[0], Path(out).with_suffix(".holdout.nii.gz"), axis, image_size, holdout)
    intensity = {"data_range": [-1.0, 1.0], "normalisation": "percentiles 0.5-99.5 -> [-1, 1], clipped"}
    return fit_prior(train, validation, out, data=data, intensity=intensity, augmentation=True, **options)


def train_native_prior(
    volumes: Sequence[str | Path],
    out: str | Path,
    *,
    tissue_maps: Sequence[str | Path] = (),
    holdout: tuple[int, int] | None = None,
    guard: int = 0,
    validation: tuple[int, int] | None = None,
    axes: Sequence[int] = (0, 1, 2),
    patch_sizes: Sequence[int] = (48, 64, 128, 224),
    size_weights: Sequence[float] = (0.3, 0.3, 0.25, 0.15),
    batch_size: int = 16,
    data_notice: str = "",
    **options: Any,
) -> TrainingReport:
    """Train (or resume) an image prior at the volumes' own resolution, on random patches of their
    slices in several orientations (`medrecon.apps.native_data`), with synthetic contrasts where grey-
    and white-matter `tissue_maps` of the (single) volume are given (see `native_training_data`)."""
    arch = dict(options.pop("architecture", None) or NATIVE_ARCHITECTURE)
    native = native_training_data(
        volumes,
        out,
        multiple=size_multiple(arch),
        tissue_maps=tissue_maps,
        holdout=holdout,
        guard=guard,
        validation=validation,
        axes=axes,
        patch_sizes=patch_sizes,
        size_weights=size_weights,
        batch_size=batch_size,
        data_notice=data_notice,
        resume=bool(options.get("resume")),
    )
    return fit_prior(
        native.source,
        native.validation,
        out,
        data=native.data,
        intensity=native.intensity,
        batch_size=batch_size,
        architecture=arch,
        extra_card=native.card,
        **options,
    )


@dataclass
class NativeData:
    """What training at native resolution draws on: the patch source, the validation images, and
    the card entries describing them (data, intensity, spacing and sizes)."""

    source: Any
    validation: torch.Tensor
    data: dict[str, Any]
    intensity: dict[str, Any]
    card: dict[str, Any]


def native_training_data(
    volumes: Sequence[str | Path],
    out: str | Path,
    *,
    multiple: int,
    tissue_maps: Sequence[str | Path] = (),
    holdout: tuple[int, int] | None = None,
    guard: int = 0,
    validation: tuple[int, int] | None = None,
    axes: Sequence[int] = (0, 1, 2),
    patch_sizes: Sequence[int] = (48, 64, 128, 224),
    size_weights: Sequence[float] = (0.3, 0.3, 0.25, 0.15),
    batch_size: int = 16,
    data_notice: str = "",
    resume: bool = False,
) -> NativeData:
    """Patches of the volumes' slices at their own resolution, for any model trained there.

    `holdout` (the test slab) and `validation` are axial slabs [start, stop) of slice indices (RAS
    axis 2); each is cut out of the training data with `guard` slices either side, in every
    orientation. Validation images are the whole axial slices of the validation slab (and, with
    tissue maps, a synthetic T2-like version of them), padded to `multiple`. A batch holds about
    `batch_size` 64 x 64 patches' worth of pixels whatever its patch size. A single volume's
    held-out slab is written beside `out` (out.holdout.nii.gz) unless resuming."""
    from medrecon.apps.native_data import (
        PatchSource,
        load_native,
        native_holdout,
        tissue_channels,
        validation_images,
    )

    if not volumes:
        raise InputError("training needs at least one NIfTI volume")
    check_volume_paths([*volumes, *tissue_maps])
    if tissue_maps and len(volumes) != 1:
        raise InputError("tissue maps belong to one volume: give a single volume with --tissue-maps")
    if any(p % multiple for p in patch_sizes):
        raise InputError(f"patch sizes {list(patch_sizes)} must be multiples of {multiple} for this network")
    loaded = [load_native(p) for p in volumes]
    tissues = [tissue_channels(loaded[0], tissue_maps)] if tissue_maps else [None] * len(loaded)
    slabs = [slab for slab in (holdout, validation) if slab is not None]
    excluded = [(start - guard, stop + guard) for start, stop in slabs]
    source = PatchSource(
        loaded,
        tissues,
        excluded,
        sizes=patch_sizes,
        size_weights=size_weights,
        pixels=batch_size * 64 * 64,
        axes=axes,
    )
    if validation is not None:
        images = validation_images(loaded[0].data, validation, multiple)
        if tissue_maps:  # the same slices in a contrast the volume does not have: T2-like
            t2 = torch.tensor([1.0, 0.6, 0.35])[:, None, None, None]
            images = torch.cat([images, validation_images((tissues[0] * t2).sum(0), validation, multiple)])
    else:
        images = torch.zeros(0, 1, multiple, multiple)
    in_plane = sorted({s for v in loaded for a in axes for i, s in enumerate(v.spacing) if i != a})
    spacing = float(np.median(in_plane))
    if in_plane[-1] > 1.1 * in_plane[0]:
        log.warning("in-plane pixel sizes differ across volumes or orientations: %s mm", in_plane)
    data = {
        "files": [Path(p).name for p in volumes],
        "tissue_maps": [Path(p).name for p in tissue_maps],
        "voxel_sizes_mm": [list(v.spacing) for v in loaded],
        "holdout": list(holdout) if holdout else None,
        "validation": list(validation) if validation else None,
        "slab_axis": "axial (RAS axis 2)",
        "holdout_guard": guard,
        "excluded_slices": [list(e) for e in excluded],
        "validation_images": len(images),
        "sampling": source.describe(),
        "notice": data_notice,
    }
    if holdout is not None and len(volumes) == 1 and not resume:
        from medrecon.io import save_nifti

        slab, affine = native_holdout(volumes[0], holdout)
        save_nifti(Path(out).with_suffix(".holdout.nii.gz"), slab, affine)
    intensity = {
        "data_range": [-1.0, 1.0],
        "background": 0.0,
        "scale_quantile": 0.995,
        "complex": True,
        "normalisation": (
            "each volume divided by the 99.5th percentile of its absolute values (background stays 0); "
            "real parts of smooth-phase images too, so real and imaginary parts of complex images fit"
        ),
    }
    card = {
        "pixel_spacing_mm": [spacing, spacing],
        "orientation": ", ".join(source.describe()["orientations"]),
        "size_multiple": multiple,
        "min_size": multiple,
    }
    return NativeData(source, images, data, intensity, card)


def train_dataset_prior(
    out: str | Path,
    dataset: str,
    *,
    count: int = 4000,
    dataset_options: dict[str, Any] | None = None,
    host=None,
    **options: Any,
) -> TrainingReport:
    """Train (or resume) an image prior on `count` generated images of a plugin's `dataset`
    (`medrecon plugins` lists them, kind "dataset"; e.g. blur kernels for blind-dps), 10% kept for
    validation. The dataset's factory gets `count`, the training seed and `dataset_options`."""
    from medrecon.api import build_contribution
    from medrecon.contracts import TrainingImages

    if count < 2:
        raise InputError(f"--count must be >= 2 (10% of the images are kept for validation), got {count}")
    params = {**(dataset_options or {}), "count": count, "seed": options.get("seed", 0)}
    made = build_contribution("dataset", dataset, params, TrainingImages, host)
    images = made.images
    held = max(count // 10, 1)
    data = {**made.data, "dataset": dataset, "train_images": count - held, "validation_images": held}
    if made.architecture is not None:
        options.setdefault("architecture", made.architecture)
    return fit_prior(
        images[held:], images[:held], out, data=data, intensity=made.intensity, augmentation=False, **options
    )


def fit_prior(
    train: torch.Tensor | BatchSource,
    validation: torch.Tensor,
    out: str | Path,
    *,
    data: dict[str, Any],
    intensity: dict[str, Any],
    augmentation: bool = True,
    steps: int = 1000,
    batch_size: int = 16,
    lr: float = 2e-4,
    lr_decay: str = "constant",
    ema_decay: float = 0.999,
    checkpoint_every: int = 500,
    seed: int = 0,
    device: str | torch.device = "cpu",
    resume: bool = False,
    architecture: dict[str, Any] | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    extra_card: dict[str, Any] | None = None,
) -> TrainingReport:
    """Train a DDPM (epsilon prediction) on images (N, 1, S, S) in [-1, 1], or on the batches of a
    source (`sample(generator)` -> (B, 1, H, W)); write out.safetensors + out.json (EMA weights and
    prior card) and out.state.pt (to resume) every `checkpoint_every` steps. `card` entries are
    merged into the prior card.

    `lr` holds for this run, resumed or not (a resumed optimizer keeps its moments, not its rate).
    `lr_decay="cosine"` lowers it along a half cosine from `lr` at the step the decay began to 1%
    of `lr` at `steps`: the usual way to end a training, and to finish one that was resumed. A
    decay begins at the first step of a run that asks for it, unless the run resumes one that was
    already decaying: then it goes on along the same cosine, as if never interrupted."""
    from medrecon.device import resolve_device
    from medrecon.prior_card import schedule_table

    check_training_options(steps=steps, batch_size=batch_size, checkpoint_every=checkpoint_every, lr=lr)
    dev = resolve_device(device)
    image_size = train.shape[-1] if isinstance(train, torch.Tensor) else None
    arch = dict(architecture or CPU_ARCHITECTURE)
    torch.manual_seed(seed)
    network = build_unet(arch).to(dev)
    abar = schedule_table(SCHEDULE).to(dev)  # the table the card records, so sampling uses the same

    def sample(gen: torch.Generator) -> torch.Tensor:
        if isinstance(train, torch.Tensor):
            idx = torch.randint(0, len(train), (batch_size,), generator=gen)
            return augment(train[idx], gen) if augmentation else train[idx]
        return train.sample(gen)

    def loss(net: torch.nn.Module, x0: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        t = torch.randint(0, len(abar), (len(x0),), generator=gen).to(dev)
        eps = torch.randn(x0.shape, generator=gen).to(dev)
        a = abar[t].reshape(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
        return torch.nn.functional.mse_loss(net(x_t, t).float(), eps)

    def validate(ema: torch.nn.Module) -> float | None:
        return validation_loss(ema, validation, abar, seed) if len(validation) else None

    def card(step: int, history: list[dict]) -> dict[str, Any]:
        return {**image_card(arch, image_size, intensity, data, step, history), **(extra_card or {})}

    return run_training(
        network,
        out,
        sample=sample,
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


def run_training(
    network: torch.nn.Module,
    out: str | Path,
    *,
    sample: Callable[[torch.Generator], torch.Tensor],
    loss: Callable[[torch.nn.Module, torch.Tensor, torch.Generator], torch.Tensor],
    validate: Callable[[torch.nn.Module], float | None],
    card: Callable[[int, list[dict]], dict[str, Any]],
    steps: int,
    lr: float,
    lr_decay: str,
    ema_decay: float,
    checkpoint_every: int,
    seed: int,
    device: torch.device,
    resume: bool,
    progress: Callable[[int, int, float], None] | None,
) -> TrainingReport:
    """The training loop every medrecon model shares: AdamW on `loss(network, sample(gen), gen)`,
    an EMA of the weights, and every `checkpoint_every` steps the EMA weights with their card
    (`card(step, history)`, with `validate(ema)` in the history) and the state to resume from.
    Resuming restores weights, EMA, optimizer moments and the generator, so a resumed run draws
    the batches an uninterrupted one would."""
    if lr_decay not in LR_DECAYS:
        raise InputError(f"--lr-decay must be one of {', '.join(LR_DECAYS)}, got {lr_decay!r}")
    out = Path(out)
    dev = device
    ema = copy.deepcopy(network).eval()
    optimizer = torch.optim.AdamW(network.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    state_path = out.with_suffix(".state.pt")
    start_step, history, decay_start = 0, [], 0
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
        decay = state.get("decay", {"kind": "constant"})  # checkpoints before this key: constant
        decay_start = decay["start"] if decay["kind"] == lr_decay != "constant" else start_step
    amp = dev.type == "cuda"
    began = time.perf_counter()
    loss_value, val_loss = float("nan"), None
    for step in range(start_step, steps):
        x0 = sample(gen).to(dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            value = loss(network, x0, gen)
        rate = learning_rate(lr, lr_decay, step - decay_start, steps - decay_start)
        for group in optimizer.param_groups:
            group["lr"] = rate
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        with torch.no_grad():
            decay = min(ema_decay, (1 + step) / (10 + step))  # warm-up: early weights fade fast
            for e, p in zip(ema.parameters(), network.parameters(), strict=True):
                e.lerp_(p, 1 - decay)
        loss_value = float(value.detach())
        if progress is not None:
            progress(step + 1, steps, loss_value)
        if (step + 1) % checkpoint_every == 0 or step + 1 == steps:
            val_loss = validate(ema)
            history.append(
                {"step": step + 1, "train_loss": loss_value, "validation_loss": val_loss, "lr": rate}
            )
            save_prior(out, ema, card(step + 1, history))
            with atomic_path(state_path) as tmp:
                torch.save(
                    {
                        "network": network.state_dict(),
                        "ema": ema.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "generator": gen.get_state(),
                        "step": step + 1,
                        "history": history,
                        "decay": {"kind": lr_decay, "start": decay_start},
                    },
                    tmp,
                )
    return TrainingReport(
        steps, loss_value, val_loss, time.perf_counter() - began, out.with_suffix(".json"), history
    )


LR_DECAYS = ("constant", "cosine")


def learning_rate(lr: float, decay: str, done: int, total: int) -> float:
    """The learning rate after `done` of the decay's `total` steps: constant, or a half cosine from
    `lr` down to 1% of it."""
    if decay == "constant" or total <= 1:
        return lr
    floor = 0.01 * lr
    return floor + (lr - floor) * 0.5 * (1 + math.cos(math.pi * done / (total - 1)))


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
