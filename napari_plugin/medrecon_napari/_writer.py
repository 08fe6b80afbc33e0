"""Writer: an image layer to NIfTI, placed where napari shows it (the layer's affine)."""

from __future__ import annotations

from typing import Any


def write_nifti(path: str, data: Any, meta: dict) -> list[str]:
    import numpy as np

    from medrecon import InputError
    from medrecon.io import save_nifti
    from medrecon_napari._affine import nifti_affine

    metadata = meta.get("metadata") or {}
    layer_affine = meta.get("affine")
    if layer_affine is not None and np.shape(layer_affine) == (4, 4):
        affine = nifti_affine(np.asarray(layer_affine))
    else:  # a 2D layer: keep what it was read with, if anything
        affine = metadata.get("nifti_affine")
    source = metadata.get("source")
    try:
        out = save_nifti(path, np.asarray(data), affine, metadata.get("nifti_header"), inputs=(source,))
    except InputError as err:
        # napari reads a ValueError from a writer as "not a valid writer" and drops the message.
        raise OSError(f"medrecon could not write {path}: {err}") from err
    return [str(out)]
