"""fastMRI multi-coil HDF5 files read as measurements, in the dataset's own conventions (the
`fastmri` reader: `medrecon.load_bundle` hands it the HDF5 files that hold `kspace` and no `y`).

A file holds `kspace` (slices, coils, readout, phase encode), complex64, on the *encoded* grid
(e.g. 640 x 368: the readout is twice oversampled), an `ismrmrd_header` (ISMRMRD XML) and, in the
training and validation sets, `reconstruction_rss` on the *recon* grid (e.g. 320 x 320: the
root-sum-of-squares image, centre-cropped). The test sets also store the sampled `mask` columns.

Reading follows what the dataset's reference code does to make `reconstruction_rss`: images are
the centered orthonormal inverse FFT of k-space, centre-cropped to the recon matrix. The readout
oversampling is removed from k-space exactly (the readout is fully sampled: inverse FFT along it,
crop, FFT back), which halves the work; the phase-encode axis keeps its encoded width (it is
undersampled, so it cannot be cropped in k-space) and results are centre-cropped to the recon
matrix afterwards (`Measurement.crop`). The affine comes from the recon space's field of view
(mm); the XML header carries no slice orientation, so the affine is axis-aligned (said in `attrs`).
MONAI's `FastMRIReader` reads the same datasets but not the header, hence this reader.

The noise level of a file is unknown: it is estimated from the k-space periphery (sampled columns,
outer eighth of the readout band at both ends, where the signal is far below the noise) by the
median absolute deviation of the real and imaginary parts, and the estimate is said in `attrs`.
"""

from __future__ import annotations

import inspect
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from pathlib import Path

import h5py
import numpy as np

import medrecon
from medrecon import ComponentRecipe, InputError, Measurement
from medrecon.io import plain_value
from medrecon.metrics import magnitude
from medrecon_mri.sense import make_mask

OPERATOR = "mri-multicoil"
#: the outer fraction of the (encoded) readout band, at each end, used for the noise estimate
NOISE_BAND = 1 / 8


@dataclass(frozen=True)
class Space:
    """An ISMRMRD encoding space: matrix size (x readout, y phase encode, z) and field of view in mm."""

    matrix: tuple[int, int, int]
    fov_mm: tuple[float, float, float]


def parse_header(xml: str | bytes, path: Path | str = "the file") -> dict[str, Space]:
    """The encoded and recon spaces of an ISMRMRD XML header (first encoding)."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as err:
        raise InputError(f"{path}: ismrmrd_header is not valid XML ({err})") from None
    ns = {"m": root.tag[1:].split("}")[0]} if root.tag.startswith("{") else {}
    prefix = "m:" if ns else ""

    def find(node, name):
        found = node.find(f"{prefix}{name}", ns)
        if found is None:
            raise InputError(f"{path}: ismrmrd_header has no <{name}> under <{_bare(node.tag)}>")
        return found

    def number(node, name, kind):
        text = find(node, name).text
        try:
            value = kind(float(text))
        except (TypeError, ValueError):
            raise InputError(f"{path}: ismrmrd_header <{name}> is {text!r}; expected a number") from None
        if value <= 0:
            raise InputError(f"{path}: ismrmrd_header <{name}> is {value}; expected a positive number")
        return value

    encoding = find(root, "encoding")
    spaces = {}
    for key in ("encodedSpace", "reconSpace"):
        space = find(encoding, key)
        matrix, fov = find(space, "matrixSize"), find(space, "fieldOfView_mm")
        spaces[key] = Space(
            tuple(number(matrix, a, int) for a in "xyz"), tuple(number(fov, a, float) for a in "xyz")
        )
    return spaces


def _bare(tag: str) -> str:
    return tag.split("}")[-1]


def remove_readout_oversampling(kspace: np.ndarray, rows: int) -> np.ndarray:
    """k-space on `rows` readout samples: centered inverse FFT along the readout (axis -2), centre
    crop to `rows`, FFT back. Exact where the readout is fully sampled; orthonormal FFTs keep the
    image values (and so the units of `reconstruction_rss`)."""
    from scipy import fft

    image = fft.fftshift(fft.ifft(fft.ifftshift(kspace, axes=-2), axis=-2, norm="ortho"), axes=-2)
    top = (image.shape[-2] - rows) // 2
    image = image[..., top : top + rows, :]
    out = fft.fftshift(fft.fft(fft.ifftshift(image, axes=-2), axis=-2, norm="ortho"), axes=-2)
    return out.astype(np.complex64)


def estimate_noise_std(kspace: np.ndarray, columns: np.ndarray) -> float | None:
    """sigma (E|n|^2 = sigma^2, medrecon's convention for complex y) from the readout periphery of
    the sampled columns: 1.4826 x the median absolute deviation of the real and imaginary parts,
    times sqrt(2); None where the periphery shows no noise at all (noiseless synthetic data)."""
    rows = kspace.shape[-2]
    band = max(1, int(round(rows * NOISE_BAND)))
    edge = np.concatenate([kspace[..., :band, :], kspace[..., rows - band :, :]], axis=-2)
    values = edge[..., columns]
    parts = np.concatenate([values.real.ravel(), values.imag.ravel()]).astype(np.float64)
    mad = np.median(np.abs(parts - np.median(parts))) if parts.size else 0.0
    return float(1.4826 * mad * np.sqrt(2)) if mad > 0 else None


def affine(space: Space, shape: tuple[int, int, int]) -> np.ndarray:
    """A NIfTI affine for (D, H, W) = (slices, readout, phase encode) images on the recon grid:
    voxel sizes from the recon field of view, centred at the origin, axis-aligned."""
    rows, cols = space.matrix[0], space.matrix[1]
    d_h, d_w, d_z = space.fov_mm[0] / rows, space.fov_mm[1] / cols, space.fov_mm[2]
    a = np.diag([d_w, d_h, d_z, 1.0])  # NIfTI (i, j, k) = (W, H, D)
    a[:3, 3] = -(np.array([shape[2], shape[1], shape[0]]) - 1) / 2 * np.diag(a)[:3]
    return a


def read_fastmri(f: h5py.File, path: Path) -> Measurement:
    """A fastMRI multi-coil file as a Measurement (see the module docstring)."""
    kspace = f["kspace"]
    if not isinstance(kspace, h5py.Dataset) or kspace.ndim != 4:
        shape = getattr(kspace, "shape", "a group")
        raise InputError(
            f"{path}: fastMRI 'kspace' has shape {shape}; expected slices x coils x H x W "
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
    if not cols.any():
        raise InputError(f"{path}: k-space holds no sampled column (all zero)")
    attrs = {"fastmri": {k: plain_value(v) for k, v in f.attrs.items()}}
    noise = estimate_noise_std(y, cols)
    if noise is not None:
        attrs["noise_std_source"] = (
            f"estimated from the k-space periphery (outer {NOISE_BAND:g} of the readout at each end, "
            f"sampled columns, median absolute deviation): {noise:.4g}"
        )
    crop, space_affine, truth = None, None, None
    if "ismrmrd_header" in f:
        spaces = parse_header(plain_value(f["ismrmrd_header"][()]), path)
        encoded, recon = spaces["encodedSpace"], spaces["reconSpace"]
        if tuple(y.shape[-2:]) != encoded.matrix[:2]:
            raise InputError(
                f"{path}: k-space is {y.shape[-2]} x {y.shape[-1]} but the header's encoded matrix "
                f"is {encoded.matrix[0]} x {encoded.matrix[1]}"
            )
        rows, cols_recon = recon.matrix[0], recon.matrix[1]
        if rows < y.shape[-2]:
            y = remove_readout_oversampling(y, rows)
            attrs["readout_oversampling_removed"] = f"{encoded.matrix[0]} -> {rows} readout samples"
        crop = (min(rows, y.shape[-2]), min(cols_recon, y.shape[-1]))
        space_affine = affine(recon, (y.shape[0], *crop))
        attrs["orientation"] = (
            "unknown: the ISMRMRD header carries no slice orientation, the affine is axis-aligned "
            f"with the recon space's voxel size {recon.fov_mm[0] / rows:.4g} x "
            f"{recon.fov_mm[1] / cols_recon:.4g} x {recon.fov_mm[2]:.4g} mm"
        )
    if "reconstruction_rss" in f:
        rss = f["reconstruction_rss"][()].astype(np.float32)
        expected = (y.shape[0], *(crop or y.shape[-2:]))
        if tuple(rss.shape) == expected:
            truth = rss
        else:
            attrs["ground_truth_dropped"] = (
                f"reconstruction_rss is {rss.shape}, the reconstruction {expected}: not comparable"
            )
    mask = np.broadcast_to(cols[None, :], y.shape[-2:]).astype(np.float32)
    return Measurement(
        y=y,
        # scanner images have phase: the operator takes complex images
        operator=ComponentRecipe(OPERATOR, {"complex_image": True}),
        noise_std=noise,
        arrays={"mask": mask},
        ground_truth=truth,
        affine=space_affine,
        source=path,
        attrs=attrs,
        crop=crop,
    )


def check_undersampling(acceleration: float, mask_type: str) -> None:
    """An InputError for an acceleration or mask type retrospective undersampling cannot make."""
    if isinstance(acceleration, bool) or not (isinstance(acceleration, int | float) and acceleration > 1):
        raise InputError(f"acceleration must be a number > 1, got {acceleration!r}")
    if mask_type not in ("equispaced", "random"):
        raise InputError(f"mask_type must be 'equispaced' or 'random', got {mask_type!r}")


def undersample(
    measurement,
    acceleration: float,
    *,
    center_fraction: float | None = None,
    mask_type: str = "equispaced",
    seed: int = 0,
):
    """Retrospectively undersample a fully sampled Cartesian multi-coil measurement: a new
    Measurement with k-space outside a `mask_type` line mask set to zero (the input is untouched).
    `center_fraction` defaults to fastMRI's: 0.08 at 4x, 0.04 at 8x (0.32 / acceleration)."""
    if not isinstance(measurement, Measurement):
        raise InputError(
            f"undersample takes a medrecon.Measurement (from medrecon.load_bundle or medrecon.simulate), "
            f"got {type(measurement).__name__}"
        )
    if measurement.operator.name != OPERATOR:
        raise InputError(
            f"undersample works on {OPERATOR} measurements (Cartesian k-space), got "
            f"'{measurement.operator.name}'"
        )
    check_undersampling(acceleration, mask_type)
    given = measurement.arrays.get("mask")
    if given is None:
        sampled = np.abs(measurement.y).sum(axis=tuple(range(measurement.y.ndim - 2))) > 0
    else:
        sampled = np.asarray(given) > 0
    fraction = float(sampled.mean())
    if fraction < 0.95:
        raise InputError(
            f"the measurement is already undersampled ({fraction:.1%} of k-space sampled, "
            f"{1 / max(fraction, 1e-9):.2f}x): retrospective undersampling needs fully sampled k-space"
        )
    width = measurement.y.shape[-1]
    center = 0.32 / acceleration if center_fraction is None else float(center_fraction)
    # the mask mri-multicoil makes for this request
    mask = make_mask(
        tuple(measurement.y.shape[-2:]), mask_type, "2d", float(acceleration), center, False, seed
    )
    mask = np.ascontiguousarray(mask, dtype=np.float32)
    columns = mask[0]
    params = dict(measurement.operator.params)
    params["acceleration"] = float(acceleration)
    attrs = dict(measurement.attrs)
    attrs["undersampled"] = {
        "mask_type": mask_type,
        "acceleration_requested": float(acceleration),
        "acceleration_realised": round(width / float(columns.sum()), 4),
        "center_fraction": center,
        "seed": seed,
    }
    return replace(
        measurement,
        y=(measurement.y * mask).astype(measurement.y.dtype),
        operator=ComponentRecipe(measurement.operator.name, params),
        arrays={**measurement.arrays, "mask": mask},
        attrs=attrs,
    )


def fastmri_metrics(reference, estimate) -> dict[str, float]:
    """PSNR, SSIM and NMSE in the fastMRI challenge's convention (its `evaluate.py`): over the whole
    volume with data range = the reference's maximum (not max - min); SSIM per slice with a uniform
    7 x 7 window (sample covariance, as scikit-image computes it) averaged over slices."""
    import torch
    from monai.metrics import PSNRMetric, SSIMMetric

    ref, est = magnitude(reference), magnitude(estimate)
    if ref.ndim == 2:
        ref, est = ref[None], est[None]
    if ref.shape != est.shape:
        raise ValueError(f"reference {ref.shape} and estimate {est.shape} differ in shape")
    peak = float(ref.max()) or 1.0
    r, e = torch.as_tensor(ref), torch.as_tensor(est)
    psnr_db = float(PSNRMetric(max_val=peak)(e[None, None], r[None, None]).mean())
    win = min(7, *ref.shape[-2:])
    win -= 1 - win % 2
    metric = SSIMMetric(spatial_dims=2, data_range=peak, kernel_type="uniform", win_size=win)
    ssim_value = float(metric(e[:, None], r[:, None]).mean())
    nmse = float(np.linalg.norm(ref - est) ** 2 / max(np.linalg.norm(ref) ** 2, 1e-30))
    return {"psnr_db": round(psnr_db, 3), "ssim": round(ssim_value, 4), "nmse": round(nmse, 5)}


class FastMRIReader(medrecon.MeasurementReader):
    """The `fastmri` reader: fastMRI multi-coil files as `mri-multicoil` measurements (see the
    module docstring); with `acceleration`, a fully sampled file is undersampled retrospectively on
    reading (`undersample`: fastMRI's equispaced line mask, centre fraction 0.32 / acceleration)."""

    def __init__(
        self,
        acceleration: float | None = None,
        center_fraction: float | None = None,
        mask_type: str = "equispaced",
        seed: int = 0,
    ):
        self.acceleration = acceleration
        self.options = {"center_fraction": center_fraction, "mask_type": mask_type, "seed": seed}
        if acceleration is not None:  # checked now, not after the whole file is read
            check_undersampling(acceleration, mask_type)
            return
        defaults = inspect.signature(FastMRIReader).parameters  # the signature's own defaults
        given = [key for key, value in self.options.items() if value != defaults[key].default]
        if given:
            raise InputError(
                f"{', '.join(given)}: options of retrospective undersampling, which needs acceleration too"
            )

    def accepts(self, path: Path) -> bool:
        """An HDF5 file with a `kspace` dataset and no medrecon `y`."""
        try:
            with h5py.File(path, "r") as f:
                return "kspace" in f and "y" not in f
        except OSError:
            return False

    def read(self, path: Path) -> Measurement:
        with h5py.File(path, "r") as f:
            measurement = read_fastmri(f, Path(path))
        if self.acceleration is not None:
            measurement = undersample(measurement, self.acceleration, **self.options)
        return measurement

    def metrics(self, reference, estimate) -> dict[str, float]:
        return fastmri_metrics(reference, estimate)
