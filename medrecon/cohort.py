"""Cohorts on Dask: one recipe over many inputs, on a local cluster by default or any cluster by address.

Workers receive the recipe (a dict) and the inputs' paths, never arrays: each worker reads its item,
simulates it when it is a volume and the recipe has an [operator], reconstructs it and writes the
output set (NIfTI, std map, sidecar) atomically, exactly as `medrecon reconstruct` does. The run's
manifest (JSON and CSV, rewritten after every item) lists each item's status, seconds, network
evaluations, device, worker, error and, where ground truth exists, PSNR / SSIM. Items whose output
set exists with the same key (a hash of recipe, input, seed and noise level, kept in the sidecar)
are skipped, so re-running the same command resumes it.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medrecon.errors import InputError

#: input files a folder contributes: measurement bundles (and HDF5 files reader plugins take), and volumes
BUNDLE_SUFFIXES = (".h5",)
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd", ".dcm")
MANIFEST_COLUMNS = (
    "item",
    "input",
    "status",
    "seconds",
    "nfe",
    "device",
    "worker",
    "psnr_db",
    "ssim",
    "output",
    "error",
)


@dataclass(frozen=True)
class BatchItem:
    """One input of a batch: its output name, its path, and per-item overrides (None: the batch's)."""

    name: str
    path: str
    seed: int | None = None
    noise_std: float | None = None


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", *BUNDLE_SUFFIXES, *VOLUME_SUFFIXES):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _is_input(path: Path) -> bool:
    return not path.name.startswith(".") and path.name.endswith((*BUNDLE_SUFFIXES, *VOLUME_SUFFIXES))


def _from_manifest(csv_path: Path) -> list[BatchItem]:
    """Rows of a CSV manifest: `path` (relative to the CSV's folder), optional `name`, `seed`,
    `noise_std`."""
    with csv_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "path" not in rows[0]:
        raise InputError(
            f"{csv_path}: a batch manifest needs a 'path' column (optional: name, seed, noise_std)"
        )
    items = []
    for number, row in enumerate(rows, start=2):
        path = Path(row["path"])
        path = path if path.is_absolute() else csv_path.parent / path
        try:
            seed = int(row["seed"]) if row.get("seed") not in (None, "") else None
            noise = float(row["noise_std"]) if row.get("noise_std") not in (None, "") else None
        except ValueError as err:
            raise InputError(
                f"{csv_path}, line {number}: {err} (seed is an integer, noise_std a number)"
            ) from None
        items.append(BatchItem(row.get("name") or _stem(path), str(path), seed, noise))
    return items


def collect_items(inputs: Sequence[str | Path]) -> list[BatchItem]:
    """The items of a batch from paths, globs, folders (their bundles and volumes) and CSV manifests,
    in order; each name (the output's) once."""
    items: list[BatchItem] = []
    for given in inputs:
        path = Path(given)
        if path.suffix == ".csv" and path.is_file():
            items += _from_manifest(path)
        elif path.is_dir() and not any(p.suffix == ".dcm" for p in path.iterdir()):
            found = sorted(p for p in path.iterdir() if _is_input(p))
            if not found:
                raise InputError(
                    f"folder {path} holds no bundles (.h5) or volumes (.nii.gz, .nrrd, .mha ...)"
                )
            items += [BatchItem(_stem(p), str(p)) for p in found]
        elif glob.has_magic(str(given)):
            found = sorted(Path(p) for p in glob.glob(str(given)))
            if not found:
                raise InputError(f"no file matches {given}")
            items += [BatchItem(_stem(p), str(p)) for p in found]
        elif path.exists():
            items.append(BatchItem(_stem(path), str(path)))
        else:
            raise InputError(f"batch input {given} does not exist")
    names: dict[str, str] = {}
    for item in items:
        if item.name in names:
            raise InputError(
                f"two inputs would write the same output '{item.name}': {names[item.name]} and {item.path}; "
                "give them names in a CSV manifest"
            )
        names[item.name] = item.path
    return items


def item_key(
    recipe: dict, item: BatchItem, seed: int, noise_std: float | None, reading: dict | None = None
) -> str:
    """What makes an item's output what it is: the recipe, the input, the seed, the noise level and
    how its file is read (`reading`: the reader and its options, where given)."""
    content = {
        "recipe": recipe,
        "input": str(Path(item.path).resolve()),
        "seed": seed,
        "noise_std": noise_std,
    }
    if reading:
        content["reading"] = reading
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _finished(out: Path, key: str) -> bool:
    from medrecon.io.atomic import sidecar_path

    side = sidecar_path(out)
    if not (out.is_file() and side.is_file()):
        return False
    try:
        return json.loads(side.read_text()).get("batch", {}).get("key") == key
    except (OSError, ValueError):
        return False


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().name)
    except (ImportError, ValueError):
        return "local"


def _worker_device(device: str) -> str:
    """`auto` with CUDA: one GPU per local worker, by the worker's number; else as given."""
    import torch

    if device != "auto" or not torch.cuda.is_available():
        return device
    name = _worker_name()
    index = int(name) if name.isdigit() else 0
    return f"cuda:{index % torch.cuda.device_count()}"


def run_item(
    item: BatchItem,
    recipe: dict,
    out_dir: str,
    *,
    seed: int,
    noise_std: float | None,
    device: str,
    torch_threads: int,
    batch_key: str,
    force: bool,
    reader: str | None = None,
    read_options: dict | None = None,
) -> dict:
    """Reconstruct one item (in a worker): its manifest row. Errors are recorded, not raised.
    `reader` and `read_options` are load_bundle's, for the items that are no volume."""
    import torch

    from medrecon.api import reconstruct, simulate
    from medrecon.device import resolve_device
    from medrecon.io import load_bundle, volume_format
    from medrecon.io.outputs import write_reconstruction
    from medrecon.metrics import magnitude, psnr, ssim

    torch.set_num_threads(torch_threads)
    out = Path(out_dir) / f"{item.name}.nii.gz"
    row: dict[str, Any] = {
        "item": item.name,
        "input": item.path,
        "worker": _worker_name(),
        "output": str(out),
    }
    if not force and _finished(out, batch_key):
        return {**row, "status": "skipped (done)", **_recorded(out)}
    start = time.perf_counter()
    try:
        device = _worker_device(device)
        if volume_format(item.path) is None:  # a bundle (or a reader plugin's file) brings its operator
            measurement = load_bundle(item.path, reader=reader, options=read_options)
            # the recipe's [operator] tunes a measurement of that operator; for another (a mixed
            # cohort) it is the one volumes are simulated with and does not apply
            own = recipe.get("operator", {}).get("name") == measurement.operator.name
            rest = recipe if own else {k: v for k, v in recipe.items() if k != "operator"}
            result = reconstruct(rest, measurement, seed=seed, device=device, noise_std=noise_std)
        elif "operator" in recipe:  # a volume: simulated with the recipe's operator, then reconstructed
            measurement = simulate(item.path, recipe["operator"], noise_std=noise_std or 0.0, seed=seed)
            rest = {k: v for k, v in recipe.items() if k != "operator"}
            result = reconstruct(rest, measurement, seed=seed, device=device)
        else:
            raise InputError(
                f"{item.path} is a volume: simulating it needs an [operator] in the recipe (or give bundles)"
            )
        result.info["batch"] = {"key": batch_key, "item": item.name, "input": item.path}
        write_reconstruction(out, result, affine=measurement.affine, inputs=(item.path,), overwrite=True)
        row.update(status="done", nfe=result.info.get("nfe", 0), device=str(resolve_device(device)))
        if measurement.ground_truth is not None:
            truth = magnitude(measurement.ground_truth)
            image = magnitude(result.image.detach().cpu().numpy())
            row.update(psnr_db=round(psnr(truth, image), 2), ssim=round(ssim(truth, image), 4))
    except Exception as err:  # an unreadable or invalid item is recorded; the batch goes on
        row.update(status="failed", error=f"{type(err).__name__}: {err}"[:500])
    row["seconds"] = round(time.perf_counter() - start, 2)
    return row


def _recorded(out: Path) -> dict:
    """What a finished item's sidecar says, for the manifest of a resumed batch."""
    from medrecon.io.atomic import sidecar_path

    info = json.loads(sidecar_path(out).read_text())
    return {"nfe": info.get("nfe"), "seconds": round(float(info.get("seconds", 0.0)), 2)}


def write_manifest(out: Path, rows: list[dict]) -> tuple[Path, Path]:
    """The manifest as JSON and CSV beside the outputs, each written atomically."""
    from medrecon.io.atomic import write_json

    json_path, csv_path = out / "manifest.json", out / "manifest.csv"
    write_json(json_path, rows)
    tmp = csv_path.with_name(f".manifest.{os.getpid()}.csv")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, csv_path)
    return json_path, csv_path


def local_cluster_size(workers: int | None, threads_per_worker: int | None) -> tuple[int, int]:
    """(workers, torch threads per worker) with workers x threads at most the machine's cores."""
    cores = os.cpu_count() or 1
    threads = threads_per_worker or (max(1, cores // workers) if workers else 1)
    workers = workers or max(1, cores // threads)
    if workers * threads > cores:
        raise InputError(
            f"{workers} workers x {threads} threads would oversubscribe this machine's {cores} cores; "
            f"use at most {max(1, cores // threads)} workers at {threads} thread(s)"
        )
    return workers, threads


def batch(
    inputs: Sequence[str | Path],
    recipe: Any,
    out: str | Path,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    threads_per_worker: int | None = None,
    seed: int = 0,
    noise_std: float | None = None,
    device: str = "auto",
    force: bool = False,
    dry_run: bool = False,
    retries: int = 1,
    connect_timeout: float = 30.0,
    reader: str | None = None,
    read_options: dict | None = None,
    on_row: Callable[[dict], None] | None = None,
    on_cluster: Callable[[str], None] | None = None,
) -> list[dict]:
    """Reconstruct every input with one recipe on Dask and return the manifest rows.

    `scheduler` (an address such as tcp://host:8786) connects to a running cluster; without it a
    LocalCluster of processes runs here, sized by `local_cluster_size`. Each item is one task,
    retried `retries` times when its worker dies, then recorded as failed; a scheduler not reached
    within `connect_timeout` seconds is an InputError. `dry_run` returns the
    plan without running anything. `reader` and `read_options` say how the items that are no
    volume are read (`medrecon.load_bundle`'s; by default a medrecon bundle, else the first reader
    plugin that takes the file); a named reader that is unknown, or options it does not take, fail
    here (with an auto-detected reader, bad options fail each item, recorded in its row). `on_row`
    sees each finished row; `on_cluster` the dashboard link.
    Ctrl-C cancels what has not finished and leaves a manifest saying what did."""
    from medrecon.host.plugin import default_host
    from medrecon.host.recipe import Recipe
    from medrecon.io import volume_format
    from medrecon.io.bundle import build_reader

    items = collect_items(inputs)
    host = default_host()
    rec = Recipe.load(recipe).validate(host)  # a bad recipe fails here, before any cluster starts
    recipe_dict = rec.to_dict()
    if reader is not None:  # so does an unknown reader, or options it does not take
        build_reader(reader, read_options or {}, host)
    reading = {"reader": reader, "options": dict(read_options or {})} if reader or read_options else None
    out = Path(out)
    plan = []
    for item in items:
        item_seed = seed if item.seed is None else item.seed
        item_noise = noise_std if item.noise_std is None else item.noise_std
        is_volume = volume_format(item.path) is not None  # volumes are not read by a reader
        key = item_key(recipe_dict, item, item_seed, item_noise, None if is_volume else reading)
        plan.append((item, item_seed, item_noise, key))
    if dry_run:
        return [
            {
                "item": item.name,
                "input": item.path,
                "status": "would skip (done)"
                if not force and _finished(out / f"{item.name}.nii.gz", key)
                else "would run",
                "output": str(out / f"{item.name}.nii.gz"),
            }
            for item, _, _, key in plan
        ]
    out.mkdir(parents=True, exist_ok=True)
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is None:
        n_workers, threads = local_cluster_size(workers, threads_per_worker)
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,  # one item at a time per worker; torch gets `threads`
            processes=True,
            silence_logs=logging.WARNING,  # the cluster's own INFO lines drown the items' progress
            dashboard_address=":0" if _has_bokeh() else None,
        )
        client = Client(cluster)
    else:
        threads = threads_per_worker or 1
        try:
            client = Client(scheduler, timeout=f"{connect_timeout}s")
        except (OSError, TimeoutError, ValueError) as err:
            raise InputError(
                f"could not reach a Dask scheduler at {scheduler!r} ({err}); give its address as "
                "tcp://HOST:PORT, or leave --scheduler out for a local cluster"
            ) from None
    if on_cluster is not None:
        on_cluster(
            client.dashboard_link if _has_bokeh() or scheduler else "(no dashboard: bokeh not installed)"
        )
    rows: dict[str, dict] = {
        item.name: {"item": item.name, "input": item.path, "status": "pending"} for item, *_ in plan
    }
    interrupted = False
    try:
        futures = {
            client.submit(
                run_item,
                item,
                recipe_dict,
                str(out),
                seed=item_seed,
                noise_std=item_noise,
                device=device,
                torch_threads=threads,
                batch_key=key,
                force=force,
                reader=reader,
                read_options=read_options,
                retries=retries,
                key=f"medrecon-{item.name}-{key}",  # the task's name on the dashboard
            ): item
            for item, item_seed, item_noise, key in plan
        }
        for future in as_completed(futures):
            item = futures[future]
            try:
                row = future.result()
            except Exception as err:  # the task itself failed: its worker died `retries` + 1 times
                row = {
                    "item": item.name,
                    "input": item.path,
                    "status": "failed",
                    "error": f"{type(err).__name__}: {err}",
                }
            rows[item.name] = row
            write_manifest(out, list(rows.values()))
            if on_row is not None:
                on_row(row)
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        client.close()
        if cluster is not None:
            cluster.close()  # the local workers stop here, mid-item or not
        if interrupted:
            _settle_interrupted(out, rows, {item.name: key for item, _, _, key in plan})
    write_manifest(out, list(rows.values()))
    return list(rows.values())


def _settle_interrupted(out: Path, rows: dict[str, dict], keys: dict[str, str]) -> None:
    """After Ctrl-C, once the workers stopped: an unreported item whose output set is complete (its
    sidecar has the item's key) did finish; any other is cancelled, and the pieces a worker stopped
    mid-write left (staged files, an image without its sidecar) are removed. The manifest says so."""
    from medrecon.io.atomic import sidecar_path
    from medrecon.io.outputs import ROLES

    for name, row in rows.items():
        if row["status"] != "pending":
            continue
        target = out / f"{name}.nii.gz"
        if _finished(target, keys[name]):
            row.update(status="done", output=str(target), **_recorded(target))
            continue
        row["status"] = "cancelled"
        for staged in out.glob(f".{name}*.staged*"):
            staged.unlink(missing_ok=True)
        if not sidecar_path(target).exists():
            for part in (target, *(out / f"{name}_{role}.nii.gz" for role in ROLES)):
                part.unlink(missing_ok=True)
    write_manifest(out, list(rows.values()))


def _has_bokeh() -> bool:
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return False
    return True
