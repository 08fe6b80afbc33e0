"""Writing a Reconstruction: NIfTI image, std map, extras (kernel), and the JSON sidecar."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medrecon.contracts import Reconstruction
from medrecon.errors import InputError
from medrecon.io.atomic import check_output_path, sidecar_path, write_json
from medrecon.io.nifti import is_nifti, save_nifti


def output_paths(out: str | Path, result: Reconstruction) -> dict[str, Path]:
    """{role: path}: the image at `out`, others beside it as out_std.nii.gz, out_<extra>.nii.gz."""
    out = Path(out)
    if not is_nifti(out):
        raise InputError(f"output {out} must end in .nii or .nii.gz")
    ext = ".nii.gz" if out.name.endswith(".nii.gz") else ".nii"
    stem = out.name[: -len(ext)]
    paths = {"image": out}
    if result.std is not None:
        paths["std"] = out.with_name(f"{stem}_std{ext}")
    for key in result.extras:
        paths[key] = out.with_name(f"{stem}_{key}{ext}")
    paths["sidecar"] = sidecar_path(out)
    return paths


def write_reconstruction(
    out: str | Path,
    result: Reconstruction,
    *,
    affine: np.ndarray | None = None,
    header=None,
    inputs: tuple = (),
) -> list[Path]:
    """Write every part of `result`; all paths are checked against the inputs before any is written."""
    paths = output_paths(out, result)
    for path in paths.values():
        check_output_path(path, inputs)
    arrays = {"image": result.image, "std": result.std, **result.extras}
    written = []
    for role, path in paths.items():
        if role == "sidecar":
            continue
        data = arrays[role].detach().cpu().numpy()
        # Extras such as a blur kernel live on their own grid: identity affine.
        save_nifti(path, data, affine if role in ("image", "std") else None, header, inputs=inputs)
        written.append(path)
    info = dict(result.info)
    info["files"] = {role: p.name for role, p in paths.items() if role != "sidecar"}
    if result.image.is_complex():
        info["note"] = "the image is complex; the NIfTI holds its magnitude"
    write_json(paths["sidecar"], info)
    written.append(paths["sidecar"])
    return written
