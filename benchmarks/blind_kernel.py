"""Where blind deblurring's kernel error comes from (issue 12): BlindDPS and blind DDS against blind TV.

    python benchmarks/blind_kernel.py [--slices N] [--steps S ...] [--samples K ...] [--seeds N]
                                      [--zeta Z] [--kernel-zeta KZ] [--kernel-prior NAME]
                                      [--[no-]straight-through] [--initial-sigma S ...]
                                      [--result refined|denoised ...]
                                      [--method blind-tv|blind-dps|blind-dds ...] [--json PATH]

The demo's `deblur-motion` case (9 x 9 motion kernel, noise 0.01) on the middle `--slices` of the
validation slab (as `benchmarks/tune.py`, seed 100; never the test slab). Runs the demo's blind TV,
BlindDPS (reference form, the demo's zeta, kernel_zeta, kernel prior and straight-through
gradient unless given, at each `--steps` and `--samples`) and blind DDS (the demo's), or the
`--method`s named; blind TV and blind DDS from each `--initial-sigma` (their Gaussian starting
kernel; default: each its own, blind TV the demo's 2 px, blind DDS its 3 px), blind DDS with each
`--result` (its returned image; default its own); the diffusion
samplers with the sampler seeds 100 .. 100 + `--seeds` - 1 and their mean (blind TV has no seed).
Prints, per method, PSNR, SSIM and the kernel's
relative error ||k - k_true|| / ||k_true|| with two diagnostics beside it:
- the error of each starting kernel (a Gaussian of std `initial_sigma`), before any iteration;
- the error of the kernel that best explains y from the method's final image (non-negative least
  squares, normalised to sum one), on intensities and on image gradients (where a blur's fine
  structure is not buried under the image's low frequencies). From the true image it shows what the
  noise allows; from a method's image, how far that image still is from one the kernel explains.
"""

from __future__ import annotations

import argparse
import inspect
import json
import time
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.optimize import nnls
from tune import CASES, SEED, validation_volume

import medrecon
from medrecon.apps.demo import TUNED, markdown_table, select_cases
from medrecon.metrics import psnr, relative_error, ssim
from medrecon_samplers.blind import BlindDDS, gaussian_start


def patches(image: np.ndarray, size: int) -> np.ndarray:
    """(pixels, size * size): row p holds the pixels that a kernel of `size` weighs into output
    pixel p of a zero-boundary "same" convolution (the operator's `boundary = "zero"`)."""
    windows = sliding_window_view(np.pad(image, size // 2), (size, size))
    return windows[:, :, ::-1, ::-1].reshape(-1, size * size)


def fitted_kernel(image: np.ndarray, y: np.ndarray, size: int, gradients: bool) -> np.ndarray:
    """The non-negative kernel that best explains the 2D measurement y from `image`, summing to one;
    with `gradients`, fitted to the finite differences of y along both axes (the design's rows
    differenced alike, which keeps the zero boundary exact)."""
    design = patches(image, size)
    if not gradients:
        rows, target = design, y.ravel()
    else:
        design = design.reshape(*image.shape, size * size)
        rows = np.concatenate([np.diff(design, axis=a).reshape(-1, size * size) for a in (0, 1)])
        target = np.concatenate([np.diff(y, axis=a).ravel() for a in (0, 1)])
    kernel, _ = nnls(rows, target, maxiter=50 * size * size)
    return (kernel / max(kernel.sum(), 1e-12)).reshape(size, size)


def fit_errors(volume: np.ndarray, y: np.ndarray, true: np.ndarray) -> dict:
    """The kernel fitted to each slice of `volume` (intensities, gradients): mean relative errors."""
    size = true.shape[0]
    out = {}
    for label, gradients in (("fit_intensity", False), ("fit_gradients", True)):
        errors = [
            relative_error(true, fitted_kernel(x.astype(np.float64), b.astype(np.float64), size, gradients))
            for x, b in zip(volume, y, strict=True)
        ]
        out[label] = round(float(np.mean(errors)), 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--slices", type=int, default=1)
    parser.add_argument("--steps", type=int, action="append", help="BlindDPS steps (default 100)")
    parser.add_argument("--samples", type=int, action="append", help="BlindDPS samples (default 1)")
    parser.add_argument("--seeds", type=int, default=1, help="the diffusion samplers' seeds (default 1)")
    parser.add_argument("--zeta", type=float, default=TUNED["blind-dps"]["zeta"])
    parser.add_argument("--kernel-zeta", type=float, default=TUNED["blind-dps"]["kernel_zeta"])
    parser.add_argument("--kernel-prior", help="BlindDPS's kernel prior (shipped name or card path)")
    parser.add_argument(
        "--straight-through",
        action=argparse.BooleanOptionalAction,
        default=TUNED["blind-dps"]["straight_through"],
        help="the kernel's gradient straight through its clips (the demo's) or the reference's clipped one",
    )
    parser.add_argument(
        "--initial-sigma", type=float, action="append", help="blind TV's and blind DDS's start (std, px)"
    )
    parser.add_argument(
        "--result", action="append", choices=("refined", "denoised"), help="blind DDS's returned image"
    )
    parser.add_argument("--method", action="append", choices=("blind-tv", "blind-dps", "blind-dds"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    methods = args.method or ["blind-tv", "blind-dps", "blind-dds"]

    truth, affine = validation_volume(args.slices)
    op, noise, phase = CASES["deblur-motion"]
    m = medrecon.simulate(truth, op, noise_std=noise, seed=SEED, affine=affine, phase=phase)
    true, y = np.asarray(m.arrays["kernel"], dtype=np.float64), np.asarray(m.y)
    # the demo's own recipes: blind TV and blind DDS from each start, BlindDPS with the steps,
    # samples and zetas asked
    (case,) = select_cases(["deblur-motion"], False)
    recipes = {method.label: method.recipe for method in case.methods}
    blind_tv, blind_dps, blind_dds = recipes["blind TV"], recipes["BlindDPS"], recipes["blind DDS"]
    # each method's starts: those asked, else its own (the demo's blind TV's, blind DDS's default)
    starts = {
        "blind-tv": args.initial_sigma or [blind_tv["sampler"]["initial_sigma"]],
        "blind-dds": args.initial_sigma or [default_of(BlindDDS, "initial_sigma")],
    }
    rows = [{"method": "true image", **fit_errors(truth, y, true)}]
    for sigma in sorted({s for m, sigmas in starts.items() if m in methods for s in sigmas}):
        start_kernel = gaussian_start(true.shape, sigma, "cpu").numpy()
        error = round(relative_error(true, start_kernel), 3)
        rows.append({"method": f"the start (Gaussian, std {sigma:g} px)", "kernel_error": error})
    seeds = list(range(SEED, SEED + args.seeds))
    runs = []
    if "blind-tv" in methods:
        for sigma in starts["blind-tv"]:
            recipe = with_sampler(blind_tv, {"initial_sigma": sigma})
            runs.append((f"blind TV (start {sigma:g} px)", recipe, [SEED]))
    if "blind-dds" in methods:
        for sigma in starts["blind-dds"]:
            for result in args.result or [default_of(BlindDDS, "result")]:
                recipe = with_sampler(blind_dds, {"initial_sigma": sigma, "result": result})
                steps = recipe["sampler"]["steps"]
                runs.append((f"blind DDS (start {sigma:g} px, {result}), {steps} steps", recipe, seeds))
    dps_steps = (args.steps or [blind_dps["sampler"]["steps"]]) if "blind-dps" in methods else []
    for steps in dps_steps:
        for k in args.samples or [1]:
            overrides = {
                **({"kernel_prior": args.kernel_prior} if args.kernel_prior else {}),
                "zeta": args.zeta,
                "kernel_zeta": args.kernel_zeta,
                "straight_through": args.straight_through,
                "steps": steps,
                "samples": k,
            }
            gradient = "straight-through" if args.straight_through else "clipped"
            label = f"BlindDPS ({gradient}, kernel_zeta {args.kernel_zeta:g}), {steps} steps"
            label += f", mean of {k}" if k > 1 else ""
            runs.append((label, with_sampler(blind_dps, overrides), seeds))
    for label, recipe, run_seeds in runs:
        first = len(rows)
        for seed in run_seeds:
            rows.append(run_method(label, recipe, m, seed, truth, y, true, len(run_seeds) > 1))
            print(json.dumps(rows[-1]), flush=True)
        if len(run_seeds) > 1:
            rows.append(mean_row(label, rows[first:]))
            print(json.dumps(rows[-1]), flush=True)
    print(markdown_table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


def default_of(factory, name: str):
    """A factory's default for parameter `name`."""
    return inspect.signature(factory).parameters[name].default


def with_sampler(recipe: dict, params: dict) -> dict:
    """The recipe with `params` over its sampler's."""
    return {**recipe, "sampler": {**recipe["sampler"], **params}}


def run_method(label, recipe, m, seed, truth, y, true, show_seed) -> dict:
    """One reconstruction: PSNR, kernel error, the kernels fitted to its image, seconds."""
    start = time.perf_counter()
    result = medrecon.reconstruct(recipe, m, seed=seed)
    seconds = time.perf_counter() - start  # the reconstruction alone, not the fits below
    image = result.image.cpu().numpy().reshape(truth.shape)
    kernel = result.extras["kernel"].cpu().numpy()
    return {
        "method": label + (f", seed {seed}" if show_seed else ""),
        "psnr_db": round(psnr(truth, image), 2),
        "ssim": round(ssim(truth, image), 3),
        "kernel_error": round(relative_error(true, kernel), 3),
        **fit_errors(image, y, true),
        "seconds": round(seconds, 1),
    }


#: the columns averaged over seeds, with the digits each is rounded to
MEAN_DIGITS = {
    "psnr_db": 2,
    "ssim": 3,
    "kernel_error": 3,
    "fit_intensity": 3,
    "fit_gradients": 3,
    "seconds": 1,
}


def mean_row(label: str, rows: list[dict]) -> dict:
    """The mean over a method's seeds, with the kernel error's spread (min .. max)."""
    errors = [r["kernel_error"] for r in rows]
    out = {"method": f"{label}, mean of {len(rows)} seeds"}
    for key, digits in MEAN_DIGITS.items():
        out[key] = round(float(np.mean([r[key] for r in rows])), digits)
    out["kernel_error_range"] = f"{min(errors)} .. {max(errors)}"
    return out


if __name__ == "__main__":
    main()
