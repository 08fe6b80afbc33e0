"""Writing a Reconstruction as one set: NIfTI image, std map, extras (kernel) and the JSON sidecar.

An output set is checked before any work (`check_output_set`: the name, the folder, write access,
free space, no input overwritten, no earlier set silently replaced) and written all-or-nothing
(`write_reconstruction`: every part goes to a temporary file first; only when all are written are
they renamed into place, and a failure removes them all). A lock file beside the image keeps two
runs from writing the same set at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from medrecon.contracts import Reconstruction
from medrecon.errors import InputError
from medrecon.io.atomic import check_output_path, sidecar_path, write_json
from medrecon.io.nifti import is_nifti, save_nifti

#: the roles an output set may hold besides the image and the sidecar
ROLES = ("std", "kernel", "kernel_std")


def _stem_ext(out: Path) -> tuple[str, str]:
    ext = ".nii.gz" if out.name.endswith(".nii.gz") else ".nii"
    return out.name[: -len(ext)], ext


def output_paths(out: str | Path, result: Reconstruction) -> dict[str, Path]:
    """{role: path}: the image at `out`, others beside it as out_std.nii.gz, out_<extra>.nii.gz."""
    out = Path(out)
    if not is_nifti(out):
        raise InputError(f"output {out} must end in .nii or .nii.gz")
    stem, ext = _stem_ext(out)
    paths = {"image": out}
    if result.std is not None:
        paths["std"] = out.with_name(f"{stem}_std{ext}")
    for key in result.extras:
        paths[key] = out.with_name(f"{stem}_{key}{ext}")
    paths["sidecar"] = sidecar_path(out)
    return paths


def existing_set(out: str | Path) -> list[Path]:
    """The files of an earlier output set at `out`: the image, its sidecar, the files the sidecar
    lists, and the usual siblings (out_std, out_kernel ...)."""
    out = Path(out)
    stem, ext = _stem_ext(out)
    candidates = [out, sidecar_path(out), *(out.with_name(f"{stem}_{role}{ext}") for role in ROLES)]
    side = sidecar_path(out)
    if side.is_file():
        with contextlib.suppress(ValueError, OSError, AttributeError):
            listed = json.loads(side.read_text()).get("files", {})
            candidates += [out.with_name(Path(name).name) for name in listed.values()]
    return sorted({p for p in candidates if p.exists()})


def check_output_set(
    out: str | Path,
    inputs: Iterable[str | Path | None] = (),
    *,
    overwrite: bool = False,
    expected_bytes: int = 0,
) -> Path:
    """Refuse, before any work, an output that cannot be written or would lose something: a name
    that is not NIfTI, a missing or read-only folder, too little free space for `expected_bytes`,
    an input as output, or an earlier set at the same path (unless `overwrite`)."""
    if not str(out).strip():
        raise InputError("the output path is empty: give a file name such as recon.nii.gz")
    if is_nifti(Path(out)) and not _stem_ext(Path(out))[0]:
        raise InputError(f"output {out} has no name before its extension: give one, e.g. recon.nii.gz")
    out = check_output_path(out, list(inputs))
    if not is_nifti(out):
        raise InputError(
            f"output {out} must end in .nii or .nii.gz (NIfTI), e.g. {out.with_suffix('')}.nii.gz"
        )
    folder = out.parent
    check_writable(folder)
    free = shutil.disk_usage(folder).free
    if expected_bytes and free < expected_bytes:
        raise InputError(
            f"not enough free space in {folder}: the output needs about {expected_bytes / 2**20:.1f} MB, "
            f"{free / 2**20:.1f} MB are free"
        )
    earlier = existing_set(out)
    if earlier and not overwrite:
        names = ", ".join(p.name for p in earlier)
        raise InputError(
            f"output {out} exists ({names}); give --overwrite (overwrite=True) to replace the whole set, "
            "or choose another output path"
        )
    return out


def check_writable(folder: str | Path) -> None:
    """Refuse a folder that cannot take a new file (permissions, a read-only file system), found by
    creating and removing a probe file: what the writer will do, so nothing is found too late."""
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".medrecon-probe-"):
            pass
    except OSError as err:
        raise InputError(
            f"output folder {folder} is not writable ({err.strerror or err}): choose one you can write to"
        ) from None


@contextlib.contextmanager
def output_lock(out: str | Path) -> Iterator[Path]:
    """Hold `out.lock` while a set is produced: a second run for the same output is refused."""
    lock = Path(out).with_name(Path(out).name + ".lock")
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if _stale(lock):  # left by a run that no longer exists
                lock.unlink(missing_ok=True)
                continue
            raise InputError(
                f"another run is writing {out} (lock {lock.name}); wait for it to finish, or remove "
                "the lock file if no run is active"
            ) from None
        with os.fdopen(fd, "w") as fh:
            fh.write(str(os.getpid()))
        break
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)


def _stale(lock: Path) -> bool:
    try:
        pid = int(lock.read_text().strip() or 0)
    except (OSError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def write_reconstruction(
    out: str | Path,
    result: Reconstruction,
    *,
    affine: np.ndarray | None = None,
    header=None,
    inputs: tuple = (),
    overwrite: bool = True,
) -> list[Path]:
    """Write every part of `result` as one set: all parts to temporary files, then all renamed; on
    any failure nothing of the new set is left. Files of an earlier set at `out` that the new set
    does not have (a stale std map) are removed with it when `overwrite`; otherwise an earlier set
    is refused. Nothing non-finite is written."""
    import torch

    paths = output_paths(out, result)
    for path in paths.values():
        check_output_path(path, inputs)
    earlier = existing_set(out)
    if earlier and not overwrite:
        raise InputError(f"output {out} exists; give overwrite=True to replace the whole set")
    arrays = {"image": result.image, "std": result.std, **result.extras}
    for role, value in arrays.items():
        if value is None:
            continue
        finite = torch.isfinite(torch.view_as_real(value) if value.is_complex() else value)
        if not bool(finite.all()):
            raise InputError(f"the reconstruction's {role} holds NaN or Inf values: nothing was written")
    staged: dict[Path, Path] = {}
    try:
        for role, path in paths.items():
            if role == "sidecar":
                continue
            tmp = _staging(path)
            data = arrays[role].detach().cpu().numpy()
            # Extras such as a blur kernel live on their own grid: identity affine.
            save_nifti(tmp, data, affine if role in ("image", "std") else None, header, inputs=inputs)
            staged[tmp] = path
        info = dict(result.info)
        info["files"] = {role: p.name for role, p in paths.items() if role != "sidecar"}
        if result.image.is_complex():
            info["note"] = "the image is complex; the NIfTI holds its magnitude"
        tmp = _staging(paths["sidecar"])
        write_json(tmp, info)
        staged[tmp] = paths["sidecar"]
    except BaseException:
        for tmp in staged:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, final in staged.items():  # renames do not fail for want of space
        os.replace(tmp, final)
    for stale in set(earlier) - set(paths.values()):
        stale.unlink(missing_ok=True)
    return list(paths.values())


def _staging(path: Path) -> Path:
    """A hidden temporary name beside `path` with the same extension."""
    stem, ext = (
        (path.name[: -len(".nii.gz")], ".nii.gz")
        if path.name.endswith(".nii.gz")
        else (path.stem, path.suffix)
    )
    return path.with_name(f".{stem}.{os.getpid()}.staged{ext}")
