"""Measurement bundles: one HDF5 file with y, the operator's recipe and arrays, and the noise level.

`medrecon simulate` writes what `medrecon reconstruct` reads. fastMRI multi-coil files (a `kspace`
dataset of slices x coils x H x W) are read as bundles of the `mri-multicoil` operator.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from medrecon.errors import InputError
from medrecon.io.atomic import atomic_path, check_output_path
from medrecon.recipe import ComponentRecipe

FORMAT = "medrecon-bundle"
FORMAT_VERSION = 1
FASTMRI_OPERATOR = "mri-multicoil"


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
    from medrecon import __version__

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["medrecon_version"] = __version__
        f.attrs["noise_std"] = np.nan if m.noise_std is None else float(m.noise_std)
        for key, value in m.attrs.items():
            f.attrs[key] = json.dumps(value)
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


def load_bundle(path: str | Path) -> Measurement:
    """Read a medrecon bundle or a fastMRI multi-coil HDF5 file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such measurement bundle: {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise InputError(f"{path} is not a readable HDF5 measurement bundle ({err})") from None
    try:
        with f:
            return _read_open_bundle(f, path)
    except (OSError, KeyError, RuntimeError) as err:  # h5py's errors for damaged datasets
        raise InputError(
            f"{path} could not be read: it is damaged or truncated ({type(err).__name__}: {err})"
        ) from None


def _read_open_bundle(f: h5py.File, path: Path) -> Measurement:
    if "y" not in f and "kspace" in f:
        return _read_fastmri(f, path)
    if "y" not in f:
        raise InputError(
            f"bundle {path} has no dataset 'y' (the measurement); found {sorted(f.keys())}. "
            "A bundle holds y, an 'operator' group and noise_std; fastMRI files hold 'kspace'"
        )
    if "operator" not in f or "name" not in f["operator"].attrs:
        raise InputError(
            f"bundle {path} has no 'operator' group naming its operator; "
            "write bundles with `medrecon simulate` or medrecon.save_bundle"
        )
    op = f["operator"]
    try:
        params = json.loads(op.attrs.get("params", "{}"))
    except json.JSONDecodeError as err:
        raise InputError(f"bundle {path}: operator parameters are not valid JSON ({err})") from None
    noise = float(f.attrs.get("noise_std", np.nan))
    attrs = {}
    for key, value in f.attrs.items():
        if key in ("format", "format_version", "medrecon_version", "noise_std"):
            continue
        attrs[key] = json.loads(value)
    return Measurement(
        y=f["y"][()],
        operator=ComponentRecipe(str(op.attrs["name"]), params),
        noise_std=None if np.isnan(noise) else noise,
        arrays={k: op[k][()] for k in op},
        ground_truth=f["ground_truth"][()] if "ground_truth" in f else None,
        affine=f["affine"][()] if "affine" in f else None,
        source=path,
        attrs=attrs,
    )


def _read_fastmri(f: h5py.File, path: Path) -> Measurement:
    kspace = f["kspace"]
    if kspace.ndim != 4:
        raise InputError(
            f"{path}: fastMRI 'kspace' has shape {kspace.shape}; expected slices x coils x H x W "
            "(single-coil files are not supported)"
        )
    if not np.issubdtype(kspace.dtype, np.complexfloating):
        raise InputError(
            f"{path}: fastMRI 'kspace' is {kspace.dtype}, real-valued; k-space is complex (complex64): "
            "this file is not raw k-space"
        )
    y = kspace[()].astype(np.complex64)
    if "mask" in f:  # the test and challenge sets store the column mask
        cols = np.asarray(f["mask"][()]).astype(bool).reshape(-1)
    else:
        cols = np.abs(y).sum(axis=(0, 1, 2)) > 0
    if cols.shape[0] != y.shape[-1]:
        raise InputError(f"{path}: mask has {cols.shape[0]} columns but k-space has {y.shape[-1]}")
    mask = np.broadcast_to(cols[None, :], y.shape[-2:]).astype(np.float32)
    truth = None
    if "reconstruction_rss" in f and f["reconstruction_rss"].shape[-2:] == y.shape[-2:]:
        truth = f["reconstruction_rss"][()].astype(np.float32)
    return Measurement(
        y=y,
        # scanner images have phase: the operator takes complex images
        operator=ComponentRecipe(FASTMRI_OPERATOR, {"complex_image": True}),
        noise_std=None,
        arrays={"mask": mask},
        ground_truth=truth,
        source=path,
        attrs={"fastmri": {k: _plain(v) for k, v in f.attrs.items()}},
    )


def _plain(value: Any) -> Any:
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
