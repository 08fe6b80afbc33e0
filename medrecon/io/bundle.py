"""Measurement bundles: one HDF5 file with y, the operator's recipe and arrays, and the noise level.

`medrecon simulate` writes what `medrecon reconstruct` reads. Files in other formats (a dataset's
raw files) are read by the reader plugins installed (`medrecon plugins`, kind "reader"), which
return the same `Measurement`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from medrecon.errors import InputError, MedreconError
from medrecon.host.recipe import ComponentRecipe
from medrecon.io.atomic import atomic_path, check_output_path

log = logging.getLogger(__name__)

FORMAT = "medrecon-bundle"
FORMAT_VERSION = 1


@dataclass
class Measurement:
    """What was measured and how: enough to rebuild the operator and reconstruct."""

    y: np.ndarray
    operator: ComponentRecipe
    noise_std: float | None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    ground_truth: np.ndarray | None = None
    affine: np.ndarray | None = None
    source: Path | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    #: in-plane (H, W) the results are centre-cropped to (a file's reconstruction matrix), or None
    crop: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.operator, ComponentRecipe):
            raise InputError("Measurement.operator must be a ComponentRecipe naming the operator")
        self.y = np.asarray(self.y)
        if self.y.dtype.kind not in "fc":
            raise InputError(f"measurement y must be float or complex, got dtype {self.y.dtype}")
        if not np.isfinite(self.y).all():
            bad = int((~np.isfinite(self.y)).sum())
            where = f" in {self.source}" if self.source else ""
            raise InputError(f"measurement y{where} holds {bad} NaN or Inf value(s); it must be finite")
        if self.affine is not None and np.shape(self.affine) != (4, 4):
            raise InputError(f"affine must be 4x4, got {np.shape(self.affine)}")


def save_bundle(path: str | Path, m: Measurement, *, inputs: tuple = ()) -> Path:
    """Write a measurement bundle (.h5) atomically; refuses to overwrite any of `inputs`."""
    path = check_output_path(path, inputs)
    if path.suffix not in (".h5", ".hdf5"):
        raise InputError(f"bundle {path} must end in .h5")
    from medrecon._version import __version__

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["medrecon_version"] = __version__
        f.attrs["noise_std"] = np.nan if m.noise_std is None else float(m.noise_std)
        for key, value in m.attrs.items():
            f.attrs[key] = json.dumps(value)
        if m.crop is not None:
            f.attrs["crop"] = json.dumps([int(c) for c in m.crop])
        f.create_dataset("y", data=m.y, compression="gzip", compression_opts=1)
        op = f.create_group("operator")
        op.attrs["name"] = m.operator.name
        op.attrs["params"] = json.dumps(dict(m.operator.params), default=_to_list)
        for key, arr in m.arrays.items():
            op.create_dataset(key, data=np.asarray(arr), compression="gzip", compression_opts=1)
        if m.ground_truth is not None:
            f.create_dataset("ground_truth", data=m.ground_truth, compression="gzip", compression_opts=1)
        if m.affine is not None:
            f.create_dataset("affine", data=np.asarray(m.affine, dtype=np.float64))
    return path


def load_bundle(
    path: str | Path,
    *,
    reader: str | None = None,
    options: Mapping[str, Any] | None = None,
    host=None,
) -> Measurement:
    """Read a medrecon bundle, or a file in a format a reader plugin knows (the first installed
    reader that accepts it; `reader` names one). `options` are the reader's parameters (`medrecon
    plugins --describe READER`); the measurement records its reader in `attrs["reader"]`."""
    from medrecon.host.plugin import default_host

    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such measurement bundle: {path}")
    if reader is None:
        bundle = _bundle_or_why_not(path, options)
        if isinstance(bundle, Measurement):
            return bundle
        host = host or default_host()
        readers = host.components["reader"]
        reader = next((name for name in sorted(readers) if _accepts(name, path, host)), None)
        if reader is None:
            from medrecon.errors import listing

            raise InputError(
                f"{bundle}; nor does an installed reader plugin take it (readers: {listing(readers)})"
            )
        made = build_reader(reader, options or {}, host)
    else:
        made = build_reader(reader, options or {}, host or default_host())
        if not made.accepts(path):
            raise InputError(f"{path} is not a file the '{reader}' reader takes")
    try:
        measurement = made.read(path)
    except MedreconError:
        raise
    except Exception as err:  # a damaged file, in whatever way the format's library says it
        raise InputError(
            f"{path} could not be read by the '{reader}' reader: it is damaged or truncated "
            f"({type(err).__name__}: {err})"
        ) from None
    if not isinstance(measurement, Measurement):
        raise InputError(f"reader '{reader}' gave {type(measurement).__name__}, not a medrecon.Measurement")
    measurement.attrs.setdefault("reader", reader)
    return measurement


def _bundle_or_why_not(path: Path, options: Mapping[str, Any] | None) -> Measurement | str:
    """The medrecon bundle at `path`, or why the file is none (for the error, if no reader takes it)."""
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        return f"{path} is not a readable HDF5 measurement bundle ({err})"
    with f:
        try:
            if "y" not in f:
                return (
                    f"bundle {path} has no dataset 'y' (the measurement); found {sorted(f.keys())}. "
                    "A bundle holds y, an 'operator' group and noise_std"
                )
            if options:
                raise InputError(
                    f"{path} is a medrecon bundle: reader options ({', '.join(options)}) apply "
                    "to files a reader plugin reads"
                )
            return _read_open_bundle(f, path)
        except (OSError, KeyError, RuntimeError) as err:  # h5py's errors for damaged datasets
            raise InputError(
                f"{path} could not be read: it is damaged or truncated ({type(err).__name__}: {err})"
            ) from None


def _accepts(name: str, path: Path, host) -> bool:
    """Whether reader `name` takes the file; a reader that fails to look is skipped, and logged."""
    try:
        return bool(build_reader(name, {}, host).accepts(path))
    except Exception as err:  # one broken plugin must not stop the others from reading
        log.warning("reader '%s' could not look at %s (%s: %s); skipped", name, path, type(err).__name__, err)
        return False


def build_reader(name: str, options: Mapping[str, Any], host):
    """Reader plugin `name` built with `options`: an InputError for an unknown name or options it
    does not take."""
    from medrecon.api import build_contribution
    from medrecon.contracts import MeasurementReader

    return build_contribution("reader", name, options, MeasurementReader, host)


def _read_open_bundle(f: h5py.File, path: Path) -> Measurement:
    if "operator" not in f or "name" not in f["operator"].attrs:
        raise InputError(
            f"bundle {path} has no 'operator' group naming its operator; "
            "write bundles with `medrecon simulate` or medrecon.save_bundle"
        )
    op = f["operator"]
    if not isinstance(op, h5py.Group):
        raise InputError(f"bundle {path}: 'operator' must be a group (name, params, arrays), got a dataset")
    params = _json_attr(op.attrs, "params", f"bundle {path}: operator attribute 'params'", default={})
    if not isinstance(params, dict):
        raise InputError(
            f"bundle {path}: operator attribute 'params' must be a JSON object of parameters, "
            f"got {type(params).__name__}"
        )
    noise = _noise_attr(f.attrs.get("noise_std", np.nan), path)
    attrs = {}
    for key in f.attrs:
        if key in ("format", "format_version", "medrecon_version", "noise_std", "crop"):
            continue
        attrs[key] = _json_attr(f.attrs, key, f"bundle {path}: attribute '{key}'")
    crop = _json_attr(f.attrs, "crop", f"bundle {path}: attribute 'crop'", default=None)
    if crop is not None and not (
        isinstance(crop, list) and len(crop) == 2 and all(isinstance(c, int) and c > 0 for c in crop)
    ):
        raise InputError(f"bundle {path}: attribute 'crop' must be [H, W] (positive integers), got {crop!r}")
    return Measurement(
        y=_dataset(f, "y", path),
        operator=ComponentRecipe(str(plain_value(op.attrs["name"])), params),
        noise_std=None if np.isnan(noise) else noise,
        arrays={k: _dataset(op, k, path, f"operator array '{k}'") for k in op},
        ground_truth=_dataset(f, "ground_truth", path) if "ground_truth" in f else None,
        affine=_dataset(f, "affine", path) if "affine" in f else None,
        source=path,
        attrs=attrs,
        crop=None if crop is None else tuple(crop),
    )


def _dataset(group: h5py.Group, key: str, path: Path, what: str | None = None) -> np.ndarray:
    """A numeric dataset's values; a group or a text dataset in its place is a clear error."""
    item = group[key]
    what = what or f"'{key}'"
    if not isinstance(item, h5py.Dataset):
        raise InputError(f"bundle {path}: {what} must be a numeric dataset, but it is an HDF5 group")
    value = item[()]
    kind = np.asarray(value).dtype
    if kind.kind not in "biufc":
        raise InputError(f"bundle {path}: {what} must be numeric, got {kind} ({plain_value(value)!r:.40})")
    return value


def _json_attr(attrs, key: str, what: str, default: Any = ...) -> Any:
    """An attribute that holds JSON text (as medrecon writes them)."""
    if key not in attrs:
        if default is ...:
            raise InputError(f"{what} is missing")
        return default
    value = plain_value(attrs[key])
    if not isinstance(value, str):
        raise InputError(f"{what} must be JSON text (as medrecon.save_bundle writes it), got {value!r:.60}")
    try:
        return json.loads(value)
    except json.JSONDecodeError as err:
        raise InputError(f"{what} is not valid JSON ({err}): {value!r:.60}") from None


def _noise_attr(value: Any, path: Path) -> float:
    value = plain_value(value)
    try:
        noise = float(value)
    except (TypeError, ValueError):
        raise InputError(
            f"bundle {path}: attribute 'noise_std' must be a number (the noise level in the units of y, "
            f"or NaN for unknown), got {value!r:.40}"
        ) from None
    if not (np.isnan(noise) or 0 <= noise < np.inf):
        raise InputError(f"bundle {path}: attribute 'noise_std' must be >= 0 and finite, got {noise}")
    return noise


def centre_crop(a, shape: tuple[int, int]):
    """The centre (H, W) of the last two axes (numpy or torch), starting at (n - m) // 2 as the
    fastMRI reference code crops; sizes above the array's are clipped to it."""
    h, w = a.shape[-2:]
    ch, cw = min(shape[0], h), min(shape[1], w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return a[..., top : top + ch, left : left + cw]


def plain_value(value: Any) -> Any:
    """An HDF5 attribute as plain Python: bytes decoded, numpy values as lists or scalars."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def _to_list(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"operator parameter of type {type(value).__name__} cannot be stored in a bundle")
