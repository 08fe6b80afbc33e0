"""Reader: NIfTI files open as image layers placed by their affine, header kept in metadata."""

from __future__ import annotations

from collections.abc import Callable


def get_reader(path: str | list[str]) -> Callable | None:
    paths = [path] if isinstance(path, str) else list(path)
    if not paths or not all(str(p).endswith((".nii", ".nii.gz")) for p in paths):
        return None
    return read_nifti


def read_nifti(path: str | list[str]) -> list[tuple]:
    from medrecon.io import load_nifti
    from medrecon_napari._affine import layer_affine

    paths = [path] if isinstance(path, str) else list(path)
    layers = []
    for p in paths:
        vol = load_nifti(p)
        name = vol.path.name.removesuffix(".gz").removesuffix(".nii")
        meta = {
            "name": name,
            "affine": layer_affine(vol.affine),
            "metadata": {"nifti_affine": vol.affine, "nifti_header": vol.header, "source": str(vol.path)},
        }
        layers.append((vol.data, meta, "image"))
    return layers
