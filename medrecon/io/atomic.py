"""Writing outputs safely: never onto an input, always through a temporary file and a rename."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from medrecon.errors import InputError


def check_output_path(output: str | Path, inputs: Iterable[str | Path | None]) -> Path:
    """Refuse an output that would overwrite one of the inputs; return it as a Path."""
    out = Path(output)
    for item in inputs:
        if item is None:
            continue
        src = Path(item)
        same = out.resolve() == src.resolve()
        if not same and out.exists() and src.exists():
            same = os.path.samefile(out, src)
        if same:
            raise InputError(
                f"output path {out} is the input {src}: inputs are never overwritten; "
                "choose another output path"
            )
    if out.exists() and out.is_dir():
        raise InputError(f"output path {out} is a directory; expected a file path")
    if not out.parent.exists():
        raise InputError(f"output folder {out.parent} does not exist")
    return out


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `final` (same suffixes); rename it to `final` on success.

    On any error the temporary file is removed, so a failed or cancelled write leaves no half file.
    """
    final = Path(final)
    suffix = "".join(final.suffixes[-2:]) if final.name.endswith(".nii.gz") else final.suffix
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=f".part{suffix}", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs follow the umask
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically (sorted keys, indented)."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")


def sidecar_path(output: str | Path) -> Path:
    """The JSON sidecar beside an output: out.nii.gz -> out.json."""
    out = Path(output)
    name = out.name
    for ext in (".nii.gz", ".nii", ".h5", ".npz"):
        if name.endswith(ext):
            return out.with_name(name[: -len(ext)] + ".json")
    return out.with_name(name + ".json")


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path | tuple | set):
        return str(value) if isinstance(value, Path) else list(value)
    return repr(value)
