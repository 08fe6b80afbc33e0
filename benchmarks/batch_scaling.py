"""Throughput of `medrecon batch` with 1 and 2 local Dask workers (target: 2 workers >= 1.7x).

    python benchmarks/batch_scaling.py [--json PATH] [--items N] [--workers 1 2 ...]

`--items` small volumes (16 x 64 x 64 Shepp-Logan phantoms, each shifted so that no two are equal)
are simulated as 8-coil 4x MRI and reconstructed with ADMM-TV (a CPU recipe, one torch thread per
worker) by `medrecon.batch` on a LocalCluster of each worker count, into a fresh folder each time.
The cluster's start-up (worker processes importing torch and medrecon) is timed apart from the
items' wall time; throughput is items per second of the latter. Prints a table and writes JSON rows.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

RECIPE = {
    "operator": {"name": "mri-multicoil", "coils": 8, "acceleration": 4.0},
    "prior": {"name": "tv", "weight": 0.002},
    "sampler": {"name": "admm-tv", "iterations": 60},
}


def make_volumes(folder: Path, count: int) -> None:
    from medrecon.samples import phantom_volume

    base = phantom_volume((16, 64, 64))
    for i in range(count):
        volume = np.roll(base, shift=(0, i, -i), axis=(0, 1, 2)).astype(np.float32)
        nib.save(nib.Nifti1Image(volume.transpose(2, 1, 0), np.eye(4)), str(folder / f"v{i}.nii.gz"))


def run(folder: Path, out: Path, workers: int) -> dict:
    from distributed import Client, LocalCluster

    from medrecon.cohort import batch

    start = time.perf_counter()
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    with cluster, Client(cluster) as client:
        client.run(lambda: __import__("medrecon.api") and None)  # warm: imports, as a live cluster is
        startup = time.perf_counter() - start
        begin = time.perf_counter()
        rows = batch(
            [folder], RECIPE, out, scheduler=cluster.scheduler_address, threads_per_worker=1, noise_std=0.01
        )
        seconds = time.perf_counter() - begin
    done = sum(r["status"] == "done" for r in rows)
    return {
        "workers": workers,
        "items": len(rows),
        "done": done,
        "startup_s": round(startup, 1),
        "seconds": round(seconds, 1),
        "items_per_s": round(done / seconds, 3),
        "item_seconds_mean": round(float(np.mean([r["seconds"] for r in rows])), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--items", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "volumes"
        folder.mkdir()
        make_volumes(folder, args.items)
        for workers in args.workers:
            rows.append(run(folder, Path(tmp) / f"out-{workers}", workers))
    base = rows[0]["items_per_s"]
    for row in rows:
        row["speedup_vs_first"] = round(row["items_per_s"] / base, 2)
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in cols) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
