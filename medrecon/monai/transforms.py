"""MONAI transforms around medrecon's core: simulate a measurement of an image, reconstruct one.

MONAI images are channel-first with spatial axes in NIfTI order, (1, i, j, k) with the affine in
the MetaTensor's metadata; medrecon's volumes are (D, H, W) = (k, j, i). The transforms convert on
the way in and out, so the reconstruction carries the input's affine and lies exactly over it.
Each array transform has a dictionary twin (`keys`, `allow_missing_keys`) as in MONAI. The
transforms hold only plain settings (picklable for DataLoader workers); the plugin host is built
lazily in each process.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from monai.transforms import MapTransform, Randomizable, Transform
from monai.utils import get_seed

from medrecon.errors import InputError
from medrecon.host.recipe import ComponentRecipe, Recipe
from medrecon.io.bundle import Measurement


def _to_volume(img: Any, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(1, i, j, k) or (1, i, j) channel-first image -> medrecon (D, H, W) float32 and its affine."""
    affine = getattr(img, "affine", None)
    array = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    if array.ndim not in (3, 4) or array.shape[0] != 1:
        raise InputError(
            f"'{name}' must be channel-first with one channel, (1, H, W) or (1, H, W, D), got shape "
            f"{array.shape}; add EnsureChannelFirstd before this transform"
        )
    spatial = array[0].astype(np.float32)
    if spatial.ndim == 2:
        spatial = spatial[..., None]
    return np.ascontiguousarray(spatial.transpose(2, 1, 0)), None if affine is None else np.asarray(affine)


def _to_image(volume: torch.Tensor, affine: np.ndarray | None, meta: Mapping | None = None):
    """medrecon (D, H, W) -> MONAI MetaTensor (1, i, j, k) with the given affine."""
    from monai.data import MetaTensor

    data = volume.detach().cpu()
    if data.is_complex():
        data = data.abs()
    data = data.permute(2, 1, 0).unsqueeze(0).contiguous()
    out = MetaTensor(data, meta=dict(meta or {}))
    if affine is not None:
        out.affine = torch.as_tensor(affine, dtype=torch.float64)
    return out


def _host():
    from medrecon.host.plugin import default_host

    return default_host()


class SimulateMeasurement(Randomizable, Transform):
    """Image (1, i, j, k) -> a `Measurement` (y, operator recipe and arrays, noise level, affine).

    `operator` is a recipe table (e.g. {"name": "mri-multicoil", "acceleration": 4}). A random
    transform as MONAI's are: each call draws a new seed from `self.R` for the noise and, where the
    recipe leaves the operator's own `seed` (random masks, kernels) unset, for that too; so two
    images get different noise. `seed` seeds `self.R`; it keeps that meaning inside a Compose, whose
    own seeds replace it only under `monai.utils.set_determinism` (then MONAI's usual rules make the
    pipeline reproducible) or when a `RandomState` is passed to `set_random_state`.
    """

    def __init__(
        self,
        operator: Mapping[str, Any] | str,
        noise_std: float,
        seed: int = 0,
        device: str = "cpu",
        keep_ground_truth: bool = True,
    ):
        self.operator = dict(operator) if isinstance(operator, Mapping) else {"name": operator}
        self.noise_std, self.device = float(noise_std), device
        self.keep_ground_truth = keep_ground_truth
        self.seed = int(seed)
        self.set_random_state(seed=self.seed)
        self._seed = 0

    def set_random_state(self, seed=None, state=None):
        # A Compose hands each random transform a seed drawn from its own generator, which is itself
        # unseeded unless monai.utils.set_determinism was called: so without set_determinism the seed
        # given here is noise and the transform keeps its own `seed` (a pipeline built twice with
        # seed=3 gives the same measurements); with it, or given a RandomState, MONAI's rules apply.
        if state is None and (seed is None or get_seed() is None):
            seed = self.seed
        return super().set_random_state(seed, state)

    def randomize(self, data: Any = None) -> None:
        self._seed = int(self.R.randint(0, 2**31 - 1))

    def __call__(self, img: Any, name: str = "image", randomize: bool = True) -> Measurement:
        from medrecon.api import parameters_of_operator, simulate

        if randomize:
            self.randomize()
        volume, affine = _to_volume(img, name)
        operator = dict(self.operator)
        if "seed" not in operator and "seed" in parameters_of_operator(operator["name"], _host()):
            operator["seed"] = self._seed
        return simulate(
            volume,
            ComponentRecipe.from_dict("operator", operator),
            noise_std=self.noise_std,
            seed=self._seed,
            device=self.device,
            affine=affine,
            keep_ground_truth=self.keep_ground_truth,
            host=_host(),
        )


class Reconstruct(Transform):
    """A `Measurement` -> the reconstruction as a MetaTensor (1, i, j, k) with the measurement's affine.

    `recipe` names the sampler (and prior); the measurement brings its operator. Returns the image,
    or (image, std) when `return_std` and several samples were drawn.
    """

    def __init__(self, recipe: Mapping[str, Any], seed: int = 0, device: str = "cpu"):
        self.recipe = Recipe.from_dict(recipe).to_dict()  # checked for shape here, for names at call
        self.seed, self.device = int(seed), device

    def run(self, measurement: Measurement, name: str = "measurement"):
        from medrecon.api import reconstruct

        if not isinstance(measurement, Measurement):
            raise InputError(
                f"'{name}' must hold a medrecon Measurement (from SimulateMeasurementd or "
                f"medrecon.load_bundle), got {type(measurement).__name__}"
            )
        result = reconstruct(self.recipe, measurement, seed=self.seed, device=self.device, host=_host())
        meta = {
            "medrecon": {k: v for k, v in result.info.items() if k in ("recipe", "nfe", "seed", "seconds")}
        }
        image = _to_image(result.image, measurement.affine, meta)
        std = None if result.std is None else _to_image(result.std, measurement.affine, meta)
        return image, std

    def __call__(self, measurement: Measurement):
        return self.run(measurement)[0]


class SimulateMeasurementd(Randomizable, MapTransform):
    """For each key, simulate a measurement of data[key] and store it under `{key}{suffix}` (a new
    seed per item and key, drawn from `self.R`)."""

    def __init__(
        self,
        keys,
        operator: Mapping[str, Any] | str,
        noise_std: float,
        seed: int = 0,
        device: str = "cpu",
        measurement_suffix: str = "_measurement",
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.simulate = SimulateMeasurement(operator, noise_std, seed, device)
        self.suffix = measurement_suffix
        self.set_random_state(seed=int(seed))

    def set_random_state(self, seed=None, state=None):
        super().set_random_state(seed, state)
        if hasattr(self, "simulate"):  # the array transform draws the seeds; it keeps its own seed
            self.simulate.set_random_state(seed, state)
        return self

    def randomize(self, data: Any = None) -> None:
        self.simulate.randomize()

    def __call__(self, data: Mapping) -> dict:
        out = dict(data)
        for key in self.key_iterator(out):
            try:
                self.randomize()
                out[f"{key}{self.suffix}"] = self.simulate(out[key], name=str(key), randomize=False)
            except InputError as err:
                raise type(err)(
                    f"SimulateMeasurementd, key '{key}': {err}"
                ) from None  # same class, key named
        return out


class Reconstructd(MapTransform):
    """For each key holding a Measurement, reconstruct it into its output key (and the std map into
    the std key when several samples are drawn); `drop_measurement` removes the measurement so that
    the default DataLoader collation sees tensors only.

    Output keys: `output_key` (one per key, or one name for a single key; default "reconstruction"
    for one key, "{key}_reconstruction" for several). The output keeps the meta data of the image
    the measurement was simulated from (`{image}_measurement` -> `image`, or `meta_keys`), so that
    SaveImaged names its file after the input, with the reconstruction's own affine."""

    def __init__(
        self,
        keys,
        recipe: Mapping[str, Any],
        output_key: str | list[str] | None = None,
        std_key: str | list[str] | None = None,
        seed: int = 0,
        device: str = "cpu",
        drop_measurement: bool = True,
        meta_keys: str | list[str] | None = None,
        measurement_suffix: str = "_measurement",
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.reconstruct = Reconstruct(recipe, seed, device)
        self.drop, self.suffix = drop_measurement, measurement_suffix
        n = len(self.keys)
        default_out = ["reconstruction"] if n == 1 else [f"{k}_reconstruction" for k in self.keys]
        self.output_keys = _per_key(output_key, default_out, n, "output_key")
        self.std_keys = _per_key(std_key, [f"{o}_std" for o in self.output_keys], n, "std_key")
        self.meta_keys = _per_key(meta_keys, [None] * n, n, "meta_keys")

    def __call__(self, data: Mapping) -> dict:
        out = dict(data)
        for key, output, std_name, meta_key in self.key_iterator(
            out, self.output_keys, self.std_keys, self.meta_keys
        ):
            try:
                image, std = self.reconstruct.run(out[key], name=str(key))
            except InputError as err:
                raise type(err)(f"Reconstructd, key '{key}': {err}") from None
            source = out.get(meta_key or _source_key(str(key), self.suffix))
            for target in (image, std):
                if target is not None and hasattr(source, "meta"):
                    _keep_meta(target, source.meta)
            out[output] = image
            if std is not None:
                out[std_name] = std
            if self.drop:
                del out[key]
        return out


def _per_key(value, default: list, n: int, name: str) -> list:
    if value is None:
        return default
    values = [value] if isinstance(value, str) else list(value)
    if len(values) != n:
        raise InputError(f"Reconstructd: give one {name} per key ({n}), got {len(values)}")
    return values


def _source_key(key: str, suffix: str) -> str:
    return key[: -len(suffix)] if suffix and key.endswith(suffix) else key


def _keep_meta(target, meta: Mapping) -> None:
    """The input image's meta data (file name, original affine, shape ...) on a reconstruction,
    whose own affine (the measurement's) stays."""
    affine = target.affine.clone()
    for k, v in meta.items():
        if k not in ("affine", "medrecon"):
            target.meta[k] = v
    target.affine = affine
