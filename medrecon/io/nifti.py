"""NIfTI volumes in and out through nibabel, with affine and header kept."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from medrecon.errors import InputError
from medrecon.io.atomic import atomic_path, check_output_path

NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: the largest volume read (float32 bytes): a larger header is a damaged one, or a job for a crop
MAX_VOLUME_BYTES = 16 * 2**30


@dataclass
class Volume:
    """A volume in medrecon's (D, H, W) order, with the NIfTI affine and header it came with.

    NIfTI stores voxels as (i, j, k); medrecon's arrays are (k, j, i) = (D, H, W), so an axial slice
    of a RAS-oriented scan is `data[d]`. `affine` stays the NIfTI one, for (i, j, k) indices.
    """

    data: np.ndarray
    affine: np.ndarray
    header: nib.Nifti1Header | None = None
    path: Path | None = None

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel size along (D, H, W) in mm."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0)[::-1])


def canonical_view(affine: np.ndarray) -> tuple[tuple[int, int, int], tuple[int, ...]]:
    """How a (D, H, W) volume with this NIfTI affine becomes RAS canonical (S, A, R) order, the
    orientation priors are trained in: `volume.permute(perm).flip(flips)` (torch) gives axial slices
    with anterior along H and right along W (as nibabel's `as_closest_canonical`, in medrecon's
    axis order). perm = (0, 1, 2) and flips = () for a volume already so stored."""
    import nibabel as nib

    ornt = nib.orientations.io_orientation(np.asarray(affine, dtype=np.float64))  # per (i, j, k)
    perm, flips = [0, 0, 0], []
    for axis in range(3):  # array axis (D, H, W) = NIfTI axis (k, j, i)
        ras, sign = ornt[2 - axis]
        position = 2 - int(ras)  # where it goes in (S, A, R)
        perm[position] = axis
        if sign < 0:
            flips.append(position)
    return tuple(perm), tuple(sorted(flips))


def is_nifti(path: str | Path) -> bool:
    return str(path).endswith(NIFTI_SUFFIXES)


def load_nifti(path: str | Path) -> Volume:
    """Read a 2D or 3D NIfTI file as float32 (D, H, W); a 2D image becomes one slice."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such NIfTI file: {path}")
    if not is_nifti(path):
        raise InputError(f"{path} is not a NIfTI file: expected a name ending in .nii or .nii.gz")
    try:
        img = nib.load(str(path))
    except Exception as err:  # nibabel raises many kinds for damaged files
        raise InputError(
            f"{path} could not be read as NIfTI ({type(err).__name__}: {err}); "
            "the file is damaged, truncated or not NIfTI"
        ) from None
    needed = int(np.prod(img.shape, dtype=np.float64)) * 4
    if needed > MAX_VOLUME_BYTES:
        raise InputError(
            f"{path}: its header declares a volume of {' x '.join(map(str, img.shape))} voxels, "
            f"{needed / 2**30:.1f} GiB as float32, more than medrecon reads "
            f"({MAX_VOLUME_BYTES / 2**30:.0f} GiB): the header is damaged, or crop the volume first"
        )
    if np.issubdtype(img.get_data_dtype(), np.complexfloating):
        raise InputError(
            f"{path} holds complex voxels ({img.get_data_dtype()}); medrecon reads real volumes from "
            "files (a magnitude image). For a complex image pass a complex array to medrecon.simulate "
            "with an operator that takes complex images, or use phase = 'smooth'"
        )
    if 0 in img.shape:
        raise InputError(f"{path} holds no voxels: its shape is {img.shape}")
    try:
        data = np.asarray(img.dataobj, dtype=np.float32)
    except MemoryError:
        raise InputError(f"{path}: not enough memory to read {needed / 2**30:.1f} GiB of voxels") from None
    except Exception as err:  # nibabel raises many kinds for damaged files
        raise InputError(
            f"{path} could not be read as NIfTI ({type(err).__name__}: {err}); "
            "the file is damaged, truncated or not NIfTI"
        ) from None
    return volume_from_voxels(data, img.affine.copy(), img.header, path)


def volume_from_voxels(data: np.ndarray, affine: np.ndarray, header, path: Path) -> Volume:
    """A Volume from float32 voxels in NIfTI's (i, j, k) order as any reader gives them: trailing
    singleton axes dropped, a 2D image made one slice, checked 3D and finite, put in (D, H, W)."""
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3:
        raise InputError(f"{path} holds a {data.ndim}D image of shape {data.shape}; expected 2D or 3D")
    if not np.isfinite(data).all():
        raise InputError(f"{path} holds NaN or Inf voxels; a volume must be finite")
    return Volume(np.ascontiguousarray(data.transpose(2, 1, 0)), affine, header, path)


def save_nifti(
    path: str | Path,
    data: np.ndarray,
    affine: np.ndarray | None = None,
    header: nib.Nifti1Header | None = None,
    *,
    inputs: tuple[str | Path | None, ...] = (),
) -> Path:
    """Write a (D, H, W) volume atomically as NIfTI; refuses to overwrite any of `inputs`."""
    path = check_output_path(path, inputs)
    if not is_nifti(path):
        raise InputError(f"output {path} must end in .nii or .nii.gz")
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise InputError(f"can only write 2D or 3D volumes as NIfTI, got shape {data.shape}")
    if np.iscomplexobj(data):
        data = np.abs(data)
    known = affine is not None
    affine = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise InputError(f"affine must be 4x4, got {affine.shape}")
    img = nib.Nifti1Image(data.astype(np.float32).transpose(2, 1, 0), affine, header=header)
    img.set_data_dtype(np.float32)
    img.header.set_slope_inter(None, None)  # data are written as they are: no rescaling on read
    # The affine is given in both forms, coded as the input's were (scanner anatomy for a new one);
    # with no affine known, both say so (code 0). Distances are in mm, as medrecon's spacings are.
    codes = _form_codes(header) if known else (0, 0)
    img.set_qform(affine, code=codes[0])
    img.set_sform(affine, code=codes[1])
    img.header.set_xyzt_units(xyz="mm")
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    _drop_stale_sidecar(path)
    return path


def _form_codes(header) -> tuple[int, int]:
    """(qform_code, sform_code) for a written affine: the input header's where it set them,
    else 1 (scanner anatomical) for both."""
    if header is None:
        return 1, 1
    q, s = int(header["qform_code"]), int(header["sform_code"])
    q, s = q or s or 1, s or q or 1
    return q, s


def _drop_stale_sidecar(path: Path) -> None:
    """A sidecar beside `path` that describes an earlier reconstruction written there no longer
    tells the truth about the file: it goes (with a warning) rather than mislead."""
    import json
    import logging

    from medrecon.io.atomic import sidecar_path

    side = sidecar_path(path)
    if not side.is_file():
        return
    try:
        listed = set(json.loads(side.read_text()).get("files", {}).values())
    except (ValueError, OSError, AttributeError):
        return
    if path.name in listed:
        side.unlink(missing_ok=True)
        logging.getLogger(__name__).warning(
            "%s was replaced by save_nifti; its sidecar %s, which described the earlier "
            "reconstruction, was removed",
            path,
            side.name,
        )
