"""The samplers' published forms beside medrecon's, on the demo's cases.

    python benchmarks/sampler_forms.py [--json PATH] [--slices N] [--steps S ...] [--seed N]
                                       [--case NAME ...] [--device auto|cpu|cuda]

The demo's cases (same operators, noise and tuned methods, which run too) on the middle `--slices`
slices of the held-out slab of `brain-1mm` (233 x 197 at 1 mm), with these added:
- CT (ct-8view, ct-limited-90): `diffusion-mbir` with `form = "paper"` (the paper's VE
  predictor-corrector at its defaults: tv_z 1e-4, rho 0.025, one CG step, the final consistency
  step) and `form = "vp"` (the variance-preserving redesign, its defaults), each at every `--steps`
  (default 200 and 1000).
- Inpainting and super-resolution (inpaint-70, sr-4x): `pigdm` with `weight = "tweedie"` (Tweedie's
  formula, exact for Gaussian priors) beside the demo's `"published"` weight (the authors' code).
Prints a table of PSNR, SSIM, network evaluations and seconds, and writes the rows as JSON.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from medrecon.apps.demo import BRAIN_PRIOR, Method, markdown_table, middle_slices, run_case, select_cases
from medrecon.errors import NumericalError
from medrecon.samples import brain_sample

CT_CASES = ("ct-8view", "ct-limited-90")
PIGDM_CASES = ("inpaint-70", "sr-4x")


def added_methods(case: str, steps: list[int]) -> tuple[Method, ...]:
    """The forms compared on `case`, beside the demo's own methods."""
    if case in CT_CASES:
        return tuple(
            Method(
                f"DiffusionMBIR {form}, {s} steps",
                {"prior": BRAIN_PRIOR, "sampler": {"name": "diffusion-mbir", "form": form, "steps": s}},
                diffusion=True,
            )
            for s in steps
            for form in ("paper", "vp")
        )
    pigdm = {"name": "pigdm", "steps": 50, "weight": "tweedie"}  # the demo's PiGDM, the other weight
    return (Method("PiGDM (Tweedie weight)", {"prior": BRAIN_PRIOR, "sampler": pigdm}, diffusion=True),)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", type=Path, help="write the rows as a JSON list")
    parser.add_argument("--slices", type=int, default=2, help="middle slices of the held-out slab")
    parser.add_argument("--steps", type=int, action="append", default=[], help="default: 200 and 1000")
    parser.add_argument("--case", action="append", default=[], choices=(*CT_CASES, *PIGDM_CASES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    steps = args.steps or [200, 1000]
    volume, affine = brain_sample("1mm")
    volume, affine = middle_slices(volume, affine, args.slices)
    rows = []
    for case in select_cases(args.case or [*CT_CASES, *PIGDM_CASES], quick=False):
        for method in (*case.methods, *added_methods(case.name, steps)):
            one = replace(case, methods=(method,))  # the same seed: the same measurement for each
            try:
                found = run_case(one, volume, affine, seed=args.seed, device=args.device, log=print)
            except NumericalError as err:  # a form that diverges is a result too
                print(f"  {case.name}: {method.label}: diverged ({err})")
                found = [
                    {
                        "case": case.name,
                        "method": method.label,
                        "psnr_db": "diverged",
                        "error": str(err)[:120],
                    }
                ]
            for row in found:
                rows.append({**row, "slices": args.slices, "seed": args.seed})
            if args.json:  # rewritten after each method, so a long run's finished rows are kept
                tmp = args.json.with_suffix(".tmp")
                tmp.write_text(json.dumps(rows, indent=1))
                tmp.replace(args.json)
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
