"""Conditional models on operators outside their training ranges (issue 13): MRI at 12x (trained
4-8x) and limited-angle CT over 0-45 degrees (trained 60-150), on the 2 middle slices of the
held-out slab (233 x 197, 1 mm), seeds 0-2, against CG and (MRI) DDS + TV-z with the demo's 8x
settings. Prints a table (mean PSNR in dB, mean seconds per run of 2 slices) and, with --json
PATH, writes the rows.

    python benchmarks/conditional_out_of_range.py [--json PATH]
"""

import argparse
import json
import time

import numpy as np

import medrecon
from medrecon.apps.demo import cases
from medrecon.metrics import psnr
from medrecon.samples import brain_sample

vol = brain_sample("1mm")[0]
sl = vol[7:9]
mri8 = [c for c in cases() if c.name == "mri-8x"][0]
dds = [m for m in mri8.methods if m.recipe and m.recipe.get("sampler", {}).get("name") == "dds"][0].recipe
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--json", default=None)
args = parser.parse_args()
rows = []
for label, op, noise in (
    ("MRI 12x (trained 4-8x)", {**mri8.operator, "acceleration": 12}, mri8.noise_std),
    (
        "CT 0-45 deg (trained 60-150)",
        {"name": "ct-parallel", "angle_range": [0.0, 45.0], "angle_step": 1.0},
        0.01,
    ),
):
    for seed in range(3):
        m = medrecon.simulate(sl, op, noise_std=noise, seed=seed)
        recipes = {
            "cg": {"sampler": {"name": "cg"}},
            "Diff-Unfolding": {"prior": {"name": "conditional"}, "sampler": {"name": "diff-unfolding"}},
        }
        if op["name"] == "mri-multicoil":
            recipes["BCDM"] = {
                "prior": {"name": "conditional", "weights": "bcdm-mri"},
                "sampler": {"name": "bcdm"},
            }
            recipes["DDS + TV-z (8x settings)"] = dds
        for name, r in recipes.items():
            t = time.time()
            out = medrecon.reconstruct(r, m, seed=seed)
            rows.append((label, name, seed, float(psnr(sl, out.image.numpy())), time.time() - t))
table = {}
for case, method, _, value, seconds in rows:
    table.setdefault((case, method), []).append((value, seconds))
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
    print(f"| {case} | {method} | {db:.2f} | {sec:.1f} |")
if args.json:
    with open(args.json, "w") as f:
        json.dump(summary, f, indent=1)
