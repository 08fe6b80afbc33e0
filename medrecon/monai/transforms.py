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
from monai.transforms import MapTransform, Transform

from medrecon.errors import InputError
from medrecon.io.bundle import Measurement
from medrecon.recipe import ComponentRecipe, Recipe


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
    from medrecon.plugin import default_host

    return default_host()


class SimulateMeasurement(Transform):
    """Image (1, i, j, k) -> a `Measurement` (y, operator recipe and arrays, noise level, affine).

    `operator` is a recipe table (e.g. {"name": "mri-multicoil", "acceleration": 4}); `seed` makes
    the noise reproducible.
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
        self.noise_std, self.seed, self.device = float(noise_std), int(seed), device
        self.keep_ground_truth = keep_ground_truth

    def __call__(self, img: Any, name: str = "image") -> Measurement:
        from medrecon.api import simulate

        volume, affine = _to_volume(img, name)
        return simulate(
            volume,
            ComponentRecipe.from_dict("operator", self.operator),
            noise_std=self.noise_std,
            seed=self.seed,
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


class SimulateMeasurementd(MapTransform):
    """For each key, simulate a measurement of data[key] and store it under `{key}{suffix}`."""

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

    def __call__(self, data: Mapping) -> dict:
        out = dict(data)
        for key in self.key_iterator(out):
            try:
                out[f"{key}{self.suffix}"] = self.simulate(out[key], name=str(key))
            except InputError as err:
                raise type(err)(
                    f"SimulateMeasurementd, key '{key}': {err}"
                ) from None  # same class, key named
        return out


class Reconstructd(MapTransform):
    """For each key holding a Measurement, reconstruct it into `output_key` (and the std map into
    `std_key` when several samples are drawn); `drop_measurement` removes the measurement so that
    the default DataLoader collation sees tensors only."""

    def __init__(
        self,
        keys,
        recipe: Mapping[str, Any],
        output_key: str = "reconstruction",
        std_key: str = "reconstruction_std",
        seed: int = 0,
        device: str = "cpu",
        drop_measurement: bool = True,
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.reconstruct = Reconstruct(recipe, seed, device)
        self.output_key, self.std_key, self.drop = output_key, std_key, drop_measurement
        if len(self.keys) > 1:
            raise InputError("Reconstructd takes one measurement key per transform (one output_key)")

    def __call__(self, data: Mapping) -> dict:
        out = dict(data)
        for key in self.key_iterator(out):
            try:
                image, std = self.reconstruct.run(out[key], name=str(key))
            except InputError as err:
                raise type(err)(f"Reconstructd, key '{key}': {err}") from None
            out[self.output_key] = image
            if std is not None:
                out[self.std_key] = std
            if self.drop:
                del out[key]
        return out
