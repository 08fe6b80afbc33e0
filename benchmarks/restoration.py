"""Every diffusion sampler on the built-in restoration operators, against their classical baselines.

    python benchmarks/restoration.py [--case inpaint-70|sr-4x ...] [--sampler NAME ...] [--slices N]
                                     [--weights NAME] [--sample 1mm|2.8mm] [--json PATH]
                                     [--device auto|cpu|cuda] [--quick]

The measurement of issue 19's report, rerun with the built-in operators: the middle `--slices`
(default 2) slices of the shipped 1 mm brain sample (held out of `brain-1mm`'s training; `--sample
2.8mm --weights brain-axial` is the report's own 64 x 64 setting), noise
0.01; `inpaint-70` keeps 30% of the pixels at random (`inpainting`, missing 0.7), `sr-4x` averages
4 x 4 blocks (`downsample`, slices cropped to multiples of 4). Each diffusion sampler runs with its
defaults at the step counts of the report (DDS 50 NFE, DPS 200 steps, PiGDM and MMPS 100, CCDF
its 20 from t0 = 0.2; MCG 200 with --sampler mcg); the baselines are the classical fill (mean of
the observed neighbours, or bicubic) and ADMM-TV at the weight `medrecon.apps.demo.TUNED` holds.
Prints PSNR and SSIM (monai.metrics), seconds and network evaluations per method, and whether each
result is finite.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import medrecon
from medrecon.apps.demo import (
    TUNED,
    bicubic_upsampling,
    crop_to_multiple,
    markdown_table,
    mean_fill,
    middle_slices,
    select_cases,
)
from medrecon.metrics import psnr, ssim
from medrecon.samples import brain_sample

#: the demo's restoration cases (their operator, noise and crop come from `medrecon.apps.demo`): baseline
#: name, baseline, key of ADMM-TV's tuned weight
CASES = {
    "inpaint-70": ("mean fill", mean_fill, "admm-tv-inpaint"),
    "sr-4x": ("bicubic", bicubic_upsampling, "admm-tv-sr"),
}
#: each sampler's steps here; --sampler picks some (default: all but mcg, whose 200 gradient steps
#: cost as much as DPS's)
SAMPLERS = {"dds": 50, "dps": 200, "pigdm": 100, "mmps": 100, "ccdf": 20, "mcg": 200}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--case", action="append", default=[], choices=list(CASES))
    parser.add_argument("--sampler", action="append", default=[], choices=list(SAMPLERS))
    parser.add_argument("--slices", type=int, default=2)
    parser.add_argument("--weights", default="brain-1mm", help="the diffusion prior (shipped name or card)")
    parser.add_argument(
        "--sample",
        default="1mm",
        choices=["1mm", "2.8mm"],
        help="the brain sample (2.8mm: brain-axial's 64 x 64)",
    )
    parser.add_argument("--json", help="write the rows as a JSON list to this path")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="10 steps per sampler (smoke test)")
    args = parser.parse_args()

    volume, affine = middle_slices(*brain_sample(args.sample), args.slices)
    prior = {"name": "diffusion", "weights": args.weights}
    rows = []
    for case in args.case or list(CASES):
        fill_name, fill, tv_key = CASES[case]
        [demo_case] = select_cases([case], args.quick)
        crop = demo_case.multiple
        truth, grid = crop_to_multiple(volume, affine, crop) if crop else (volume, affine)
        m = medrecon.simulate(truth, demo_case.operator, noise_std=demo_case.noise_std, seed=0, affine=grid)
        methods = [
            (fill_name, None, fill),
            (
                "ADMM-TV",
                {"prior": {"name": "tv", "weight": TUNED[tv_key]}, "sampler": {"name": "admm-tv"}},
                None,
            ),
        ]
        for name in args.sampler or [n for n in SAMPLERS if n != "mcg"]:
            steps = 10 if args.quick else SAMPLERS[name]
            methods.append(
                (f"{name} ({steps} steps)", {"prior": prior, "sampler": {"name": name, "steps": steps}}, None)
            )
        for label, recipe, external in methods:
            start = time.perf_counter()
            nfe, error = 0, ""
            try:
                if external is not None:
                    image = external(m)
                else:
                    result = medrecon.reconstruct(recipe, m, seed=0, device=args.device)
                    image, nfe = result.image.cpu().numpy(), result.info.get("nfe", 0)
            except medrecon.NumericalError as err:  # reported as a row: the point of the table
                image, error = None, str(err)
            finite = image is not None and bool(np.isfinite(image).all())
            row = {
                "case": case,
                "method": label,
                "PSNR dB": round(psnr(truth, image), 2) if finite else None,
                "SSIM": round(ssim(truth, image), 3) if finite else None,
                "seconds": round(time.perf_counter() - start, 1),
                "NFE": nfe,
                "finite": finite,
            }
            if error:
                row["error"] = error
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(markdown_table([{k: v for k, v in r.items() if k != "error"} for r in rows]))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
