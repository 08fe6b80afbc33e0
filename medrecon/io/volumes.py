"""Volumes in the formats people have: NIfTI (nibabel), and through MONAI's image readers DICOM
series (a folder of .dcm files or one file; `pip install "medrecon[dicom]"`, pydicom), NRRD
(`medrecon[nrrd]`, pynrrd) and MetaImage .mha / .mhd (`medrecon[itk]`, ITK).

Every format arrives as a `Volume`: float32 (D, H, W) = NIfTI's (k, j, i) with a RAS affine for
(i, j, k) indices, the convention of nibabel and of MONAI's readers (`affine_lps_to_ras`): DICOM's
and ITK's LPS patient coordinates are turned to RAS, so that every volume's affine means the same.
DICOM pixel values are rescaled to their physical units (Hounsfield units for CT) by the slope and
intercept of each file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medrecon.errors import InputError
from medrecon.io.nifti import MAX_VOLUME_BYTES, Volume, is_nifti, load_nifti, volume_from_voxels

DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
NRRD_SUFFIXES = (".nrrd", ".nhdr")
META_SUFFIXES = (".mha", ".mhd")
#: what `load_volume` takes, for messages
FORMATS = (
    "NIfTI (.nii, .nii.gz), DICOM (a series folder or .dcm), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd)"
)

_READERS = {
    # format: (MONAI reader class, its keyword arguments, the package it needs, the medrecon extra)
    "dicom": ("PydicomReader", {"affine_lps_to_ras": True, "fname_regex": None}, "pydicom", "dicom"),
    "nrrd": ("NrrdReader", {"affine_lps_to_ras": True}, "nrrd", "nrrd"),
    "metaimage": ("ITKReader", {"affine_lps_to_ras": True, "reverse_indexing": False}, "itk", "itk"),
}


def volume_format(path: str | Path) -> str | None:
    """'nifti', 'dicom', 'nrrd' or 'metaimage' by name (a folder holding DICOM files is 'dicom');
    None for anything else."""
    path = Path(path)
    name = path.name.lower()
    if is_nifti(name):
        return "nifti"
    if name.endswith(DICOM_SUFFIXES):
        return "dicom"
    if name.endswith(NRRD_SUFFIXES):
        return "nrrd"
    if name.endswith(META_SUFFIXES):
        return "metaimage"
    if path.is_dir() and _dicom_files(path):
        return "dicom"
    return None


def _dicom_files(folder: Path) -> list[Path]:
    """The files of a folder that are DICOM (by suffix, or by the 'DICM' preamble marker)."""
    found = []
    for p in sorted(folder.iterdir()):
        if not p.is_file():
            continue
        if p.name.lower().endswith(DICOM_SUFFIXES):
            found.append(p)
            continue
        try:
            with p.open("rb") as fh:
                fh.seek(128)
                if fh.read(4) == b"DICM":
                    found.append(p)
        except OSError:
            continue
    return found


def load_volume(path: str | Path) -> Volume:
    """Read a volume in any supported format (see the module docstring) as float32 (D, H, W)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such volume: {path}")
    kind = volume_format(path)
    if kind == "nifti":
        return load_nifti(path)
    if kind is None:
        what = (
            "a folder with no DICOM files" if path.is_dir() else f"a file of unknown format ({path.suffix})"
        )
        raise InputError(f"{path} is {what}; medrecon reads {FORMATS}")
    reader_name, options, package, extra = _READERS[kind]
    try:
        __import__(package)
    except ImportError:
        raise InputError(
            f"reading {path} ({kind}) needs the '{package}' package: pip install \"medrecon[{extra}]\""
        ) from None
    import monai.data

    reader = getattr(monai.data, reader_name)(**options)
    try:
        image = reader.read(str(path))  # a folder is one series: its files are stacked by position
        data, meta = reader.get_data(image)
    except Exception as err:  # the readers raise many kinds for damaged or foreign files
        if kind == "dicom" and path.is_dir() and isinstance(err, IndexError):  # nothing to stack
            raise InputError(
                f"{path} holds no readable DICOM image (its files named .dcm or marked DICM are not "
                "valid DICOM); a series folder holds one file per slice"
            ) from None
        raise InputError(
            f"{path} could not be read as {kind} ({type(err).__name__}: {err}); "
            "the file is damaged, incomplete or not a volume"
        ) from None
    data = np.asarray(data, dtype=np.float32)
    if data.nbytes > MAX_VOLUME_BYTES:
        raise InputError(f"{path}: {data.nbytes / 2**30:.1f} GiB of voxels is more than medrecon reads")
    affine = np.asarray(meta.get("affine", np.eye(4)), dtype=np.float64)
    if affine.shape != (4, 4):
        affine = np.eye(4)
    return volume_from_voxels(data, affine, None, path)
