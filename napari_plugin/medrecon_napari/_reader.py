"""Reader: volumes (NIfTI, DICOM series, NRRD, MetaImage) open as image layers placed by their
affine, a NIfTI header kept in metadata; measurement bundles and fastMRI files as measurements."""

from __future__ import annotations

from collections.abc import Callable


def get_reader(path: str | list[str]) -> Callable | None:
    from medrecon.io import volume_format

    paths = [path] if isinstance(path, str) else list(path)
    if paths and all(volume_format(p) is not None for p in paths):
        return read_nifti  # NIfTI, a DICOM series folder or file, NRRD, MetaImage
    if paths and all(str(p).endswith((".h5", ".hdf5")) and _is_measurement(p) for p in paths):
        return read_bundle
    return None  # someone else's HDF5 (ilastik, BigDataViewer ...): another reader's


def _is_measurement(path: str) -> bool:
    """Whether an HDF5 file is a medrecon bundle (y and an operator group) or fastMRI k-space."""
    try:
        import h5py

        with h5py.File(path, "r") as f:
            return ("y" in f and "operator" in f) or "kspace" in f
    except (OSError, ImportError):
        return False


def read_nifti(path: str | list[str]) -> list[tuple]:
    """Volumes as image layers placed by their (RAS) affine; a NIfTI's header in the metadata."""
    from medrecon.io import load_volume
    from medrecon_napari._affine import placement

    paths = [path] if isinstance(path, str) else list(path)
    layers = []
    for p in paths:
        vol = load_volume(p)
        name = vol.path.name.removesuffix(".gz").removesuffix(".nii")
        for suffix in (".dcm", ".nrrd", ".nhdr", ".mha", ".mhd"):
            name = name.removesuffix(suffix)
        meta = {
            "name": name,
            **placement(vol.affine),
            "metadata": {"nifti_affine": vol.affine, "nifti_header": vol.header, "source": str(vol.path)},
        }
        layers.append((vol.data, meta, "image"))
    return layers


def read_bundle(path: str | list[str]) -> list[tuple]:
    """A measurement bundle (or fastMRI file): a first classical reconstruction placed by the
    bundle's affine (FBP for CT, A^H y otherwise), holding the measurement in its metadata for the
    Reconstruct widget; the measurement itself (magnitude, log scale); the ground truth if stored."""
    from pathlib import Path

    import numpy as np

    from medrecon import first_look
    from medrecon.io import load_bundle
    from medrecon_napari._affine import placement

    layers = []
    for p in [path] if isinstance(path, str) else list(path):
        m = load_bundle(p)
        stem = Path(p).name.rsplit(".", 1)[0]
        first, what = first_look(m)
        placed = placement(m.affine)
        meta = {"medrecon_measurement": m, "source": str(p)}
        layers.append((first, {"name": f"{stem} {what}", "metadata": meta, **placed}, "image"))
        layers.append(
            (np.log1p(np.abs(m.y)), {"name": f"{stem} measurement (log |y|)", "visible": False}, "image")
        )
        if m.ground_truth is not None:
            layers.append(
                (m.ground_truth, {"name": f"{stem} ground truth", "visible": False, **placed}, "image")
            )
    return layers
