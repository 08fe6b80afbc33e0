"""Conditional models on operators they were not trained on (issue 13), on the 2 middle slices of
the held-out slab (1 mm), seeds 0-2. Prints a table (mean PSNR in dB, mean seconds per run of 2
slices) and, with --json PATH, writes the rows.

    python benchmarks/conditional_out_of_range.py [--part range|unseen|all] [--model CARD]
        [--trained CARD] [--restoration CARD] [--json PATH]

(`--part` defaults to `range`; `unseen` and `all` need `--restoration`. `--model` is the
Diff-Unfolding model under test, the shipped one by default: give the card of one trained as long as
the reference models, e.g. the first stage of `scripts/train_conditional.sh`, for a comparison at
equal training.)

- `range`: outside the training ranges, MRI at 12x (trained 4-8x) and limited-angle CT over 0-45
  degrees (trained 60-150), 233 x 197, against CG, (MRI) DDS + TV-z with the demo's 8x settings
  and, with `--trained`, a Diff-Unfolding model trained on those ranges (the card `bash
  scripts/train_conditional.sh OUT out-of-range` writes: MRI 10-14x, CT spans of 30-60 degrees).
- `unseen`: operators the shipped Diff-Unfolding never saw (inpainting 70%, super-resolution 4x
  and the test suite's third-party pixel binning 2x, `tests/plugin_dists/medrecon-example`; the
  slices cropped to 232 x 196, a multiple of both factors), against a Diff-Unfolding model trained
  on them (`--restoration`, the card `bash scripts/train_conditional.sh OUT restoration` writes:
  inpainting and super-resolution, which at factor 2 with block averaging is the same linear map
  as the binning) and the pseudo-inverse / CG baseline.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

import medrecon
from medrecon.apps.demo import cases
from medrecon.metrics import psnr
from medrecon.samples import brain_sample

EXAMPLE_PLUGIN = Path(__file__).parents[1] / "tests" / "plugin_dists" / "medrecon-example"


def pixel_binning(shape, factor):
    """The third-party example plugin's operator, imported from its source (it need not be installed)."""
    sys.path.insert(0, str(EXAMPLE_PLUGIN))
    try:
        from medrecon_example.plugin import PixelBinning
    finally:
        sys.path.pop(0)
    return PixelBinning(shape, factor=factor)


def measure(truth: np.ndarray, operator, noise: float, seed: int):
    """A measurement (medrecon.simulate) for an operator recipe; for an operator object, the
    Problem y = A x + white noise of std `noise`."""
    if isinstance(operator, dict):
        return medrecon.simulate(truth, operator, noise_std=noise, seed=seed)
    clean = operator(torch.from_numpy(truth))
    gen = torch.Generator().manual_seed(seed)
    return medrecon.Problem(operator, clean + noise * torch.randn(clean.shape, generator=gen), noise)


def run(recipe: dict, data, seed: int):
    """medrecon.reconstruct for a measurement; the components' own run for a bare Problem."""
    if not isinstance(data, medrecon.Problem):
        return medrecon.reconstruct(recipe, data, seed=seed)
    prior = None
    if "prior" in recipe:
        prior = medrecon.build_component(
            "prior", medrecon.ComponentRecipe.from_dict("prior", recipe["prior"])
        )
    sampler = medrecon.build_component(
        "sampler", medrecon.ComponentRecipe.from_dict("sampler", recipe["sampler"])
    )
    return sampler.run(data, prior, seed=seed)


def range_cases(slices: np.ndarray, model: str, trained: str | None):
    mri8 = [c for c in cases() if c.name == "mri-8x"][0]
    dds = [m for m in mri8.methods if m.recipe and m.recipe.get("sampler", {}).get("name") == "dds"]
    unfolding = {"prior": {"name": "conditional", "weights": model}, "sampler": {"name": "diff-unfolding"}}
    bcdm = {"prior": {"name": "conditional", "weights": "bcdm-mri"}, "sampler": {"name": "bcdm"}}
    mri = {"cg": {"sampler": {"name": "cg"}}, "Diff-Unfolding": unfolding, "BCDM": bcdm}
    mri["DDS + TV-z (8x settings)"] = dds[0].recipe
    ct = {"cg": {"sampler": {"name": "cg"}}, "Diff-Unfolding": unfolding}
    if trained:
        reference = {
            "prior": {"name": "conditional", "weights": trained},
            "sampler": {"name": "diff-unfolding"},
        }
        mri["Diff-Unfolding trained on 10-14x"] = ct["Diff-Unfolding trained on 30-60 deg"] = reference
    ct_op = {"name": "ct-parallel", "angle_range": [0.0, 45.0], "angle_step": 1.0}
    return [
        ("MRI 12x (trained 4-8x)", slices, {**mri8.operator, "acceleration": 12}, mri8.noise_std, mri),
        ("CT 0-45 deg (trained 60-150)", slices, ct_op, 0.01, ct),
    ]


def unseen_cases(slices: np.ndarray, model: str, restoration: str):
    cropped = np.ascontiguousarray(slices[:, :232, :196])
    methods = {
        "cg": {"sampler": {"name": "cg"}},
        "Diff-Unfolding (never saw it)": {
            "prior": {"name": "conditional", "weights": model},
            "sampler": {"name": "diff-unfolding"},
        },
        "Diff-Unfolding trained on restoration": {
            "prior": {"name": "conditional", "weights": restoration},
            "sampler": {"name": "diff-unfolding"},
        },
    }
    return [
        ("inpainting 70%", cropped, {"name": "inpainting", "missing": 0.7, "seed": 1}, 0.01, methods),
        ("super-resolution 4x", cropped, {"name": "downsample", "factor": 4}, 0.01, methods),
        ("pixel binning 2x (third-party)", cropped, pixel_binning(cropped.shape, 2), 0.01, methods),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["range", "unseen", "all"], default="range")
    parser.add_argument("--model", default="diff-unfolding", help="the Diff-Unfolding model under test")
    parser.add_argument("--restoration", default=None, help="card of a model trained on restoration")
    parser.add_argument(
        "--trained", default=None, help="card of a model trained on the out-of-range operators"
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    slices = brain_sample("1mm")[0][7:9]
    chosen = []
    if args.part in ("range", "all"):
        chosen += range_cases(slices, args.model, args.trained)
    if args.part in ("unseen", "all"):
        if not args.restoration:
            parser.error(
                "--part unseen needs --restoration CARD (scripts/train_conditional.sh OUT restoration)"
            )
        chosen += unseen_cases(slices, args.model, args.restoration)
    table: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for label, truth, operator, noise, methods in chosen:
        for seed in range(args.seeds):
            data = measure(truth, operator, noise, seed)
            for name, recipe in methods.items():
                start = time.perf_counter()
                out = run(recipe, data, seed)
                value = float(psnr(truth, np.asarray(out.image)))
                table.setdefault((label, name), []).append((value, time.perf_counter() - start))
    print("| case | method | dB | seconds |\n|---|---|---|---|")
    summary = []
    for (case, method), values in table.items():
        db, sec = float(np.mean([v for v, _ in values])), float(np.mean([s for _, s in values]))
        summary.append(
            {
                "case": case,
                "method": method,
                "psnr_db": round(db, 2),
                "seconds": round(sec, 1),
                "seeds": len(values),
            }
        )
        print(f"| {case} | {method} | {db:.2f} | {sec:.1f} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
