"""Reconstruction quality of the demo's cases: the diffusion methods against the classical baselines.

    python benchmarks/quality.py [--json PATH] [--volume held-out|template|FILE.nii.gz]
                                 [--case NAME ...] [--seeds N] [--slices N] [--device auto|cpu|cuda]
                                 [--quick] [--posterior-mean K] [--weights CARD]
                                 [--conditional [BCDM,UNFOLDING]] [--only-conditional]

Runs every case of `medrecon demo` (same operators, noise, methods and hyperparameters) for
`--seeds` seeds (each seed draws new measurement noise, coil maps stay, and new sampler noise) and
prints, per case and method, the mean and standard deviation over seeds of PSNR and SSIM
(monai.metrics, on the reference's data range; magnitudes for complex images), seconds and network
evaluations; then, per case, the gain of the best diffusion method over the best classical baseline
(also in that method's JSON row, as `gain_db` and `best_baseline`).

Volumes, all at the native 1 mm of the `brain-1mm` prior and at full in-plane size: `held-out`
(default) is the shipped sample, the 16 axial slices (233 x 197) of the MNI152 template held out of
that prior's training. `template` is the whole template (needs nilearn; a GPU-sized run): most of
it was seen in training, and its rows say so. A NIfTI file is read in RAS, divided by its maximum
and evaluated whole. `--slices N` keeps the middle N slices.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace
from pathlib import Path

import numpy as np

from medrecon.apps.demo import CASE_NAMES, markdown_table, middle_slices, run_case, select_cases


def load_volume(which: str) -> tuple[np.ndarray, np.ndarray, str, bool]:
    """(volume in [0, 1], affine, description, whether training saw (most of) it)."""
    if which == "held-out":
        from medrecon.samples import brain_sample

        volume, affine = brain_sample("1mm")
        return volume, affine, "held-out slab (16 slices, 1 mm)", False
    if which == "template":
        from importlib.resources import files

        path = str(files("nilearn.datasets") / "data" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
        seen = True
    else:
        path, seen = which, False
    import nibabel as nib

    image = nib.as_closest_canonical(nib.load(path))
    volume = np.asarray(image.dataobj, dtype=np.float32).transpose(2, 1, 0)
    volume = volume / max(float(volume.max()), 1e-12)
    keep = np.flatnonzero(volume.reshape(volume.shape[0], -1).max(axis=1) > 0.01)  # slices with anatomy
    from medrecon.samples import slab

    volume, affine = slab(volume, np.asarray(image.affine), int(keep[0]), int(keep[-1]) + 1)
    return volume, affine, f"{Path(path).name}, {len(volume)} slices", seen


def summarise(per_seed: list[list[dict]], volume: str, seen: bool) -> list[dict]:
    rows = []
    for group in zip(*per_seed, strict=True):
        psnrs = [r["psnr_db"] for r in group]
        ssims = [r["ssim"] for r in group]
        row = {
            "case": group[0]["case"],
            "method": group[0]["method"],
            "psnr_db": round(statistics.mean(psnrs), 2),
            "psnr_std": round(statistics.stdev(psnrs), 2) if len(psnrs) > 1 else 0.0,
            "ssim": round(statistics.mean(ssims), 4),
            "ssim_std": round(statistics.stdev(ssims), 4) if len(ssims) > 1 else 0.0,
            "seconds": round(statistics.mean(r["seconds"] for r in group), 1),
            "nfe": group[0]["nfe"],
            "seeds": len(group),
            "volume": volume,
            "in_training": seen,
        }
        if "kernel_rel_error" in group[0]:
            row["kernel_rel_error"] = round(statistics.mean(r["kernel_rel_error"] for r in group), 3)
        rows.append(row)
    return rows


def gains(rows: list[dict], diffusion: dict[str, set[str]]) -> list[dict]:
    """Per case: best diffusion PSNR minus best classical PSNR."""
    out = []
    for case in dict.fromkeys(r["case"] for r in rows):
        mine = [r for r in rows if r["case"] == case]
        learned = [r for r in mine if r["method"] in diffusion[case]]
        classical = [r for r in mine if r["method"] not in diffusion[case]]
        if learned and classical:
            best_d = max(learned, key=lambda r: r["psnr_db"])
            best_c = max(classical, key=lambda r: r["psnr_db"])
            out.append(
                {
                    "case": case,
                    "diffusion": best_d["method"],
                    "baseline": best_c["method"],
                    "gain_db": round(best_d["psnr_db"] - best_c["psnr_db"], 2),
                }
            )
    return out


def with_posterior_mean(case, k: int):
    """The case with, after each diffusion method, the same recipe as the mean of k samples."""
    methods = []
    for method in case.methods:
        methods.append(method)
        if method.diffusion and method.recipe is not None:
            recipe = {**method.recipe, "sampler": {**method.recipe["sampler"], "samples": k}}
            methods.append(replace(method, label=f"{method.label}, mean of {k}", recipe=recipe))
    return replace(case, methods=tuple(methods))


def with_weights(case, weights: str):
    """The case with every diffusion method's prior weights replaced (a name or a prior card)."""
    methods = []
    for method in case.methods:
        if method.diffusion and method.recipe is not None and "prior" in method.recipe:
            recipe = {**method.recipe, "prior": {**method.recipe["prior"], "weights": weights}}
            method = replace(method, recipe=recipe)
        methods.append(method)
    return replace(case, methods=tuple(methods))


def with_conditional(case, bcdm: str, unfolding: str):
    """The case with the conditional models added (issue 13): BCDM (weights `bcdm`, trained on MRI
    4-8x) on the real-valued MRI cases, Diff-Unfolding (weights `unfolding`) on every case but the
    complex one (both models take real images), each with its sampler's defaults (slice by slice)
    and with TV along z (`TUNED`; Diff-Unfolding only on its training operators). On the blind
    deblurring case Diff-Unfolding gets the operator with the true kernel, as the "TV, true
    kernel" baseline does."""
    from medrecon.apps.demo import TUNED, Method

    if case.phase != "none":
        return case

    def methods(label: str, sampler: str, weights: str, with_tv_z: bool = True) -> list:
        prior = {"name": "conditional", "weights": weights}
        plain = Method(label, {"prior": prior, "sampler": {"name": sampler}}, diffusion=True)
        if not with_tv_z:
            return [plain]
        tv_z = {"name": sampler, **TUNED[f"{sampler}-tv-z"]}
        return [plain, Method(f"{label} + TV-z", {"prior": prior, "sampler": tv_z}, diffusion=True)]

    operator = case.operator["name"]
    extra = methods("BCDM", "bcdm", bcdm) if operator == "mri-multicoil" else []
    true_kernel = ", true kernel" if operator == "blind-deconv" else ""
    # TV-z's several steps only on the shipped model's training operators (MRI, CT, blur): on
    # super-resolution, which it never saw, more than one step fails (validation slab: 26.2 -> 21.9 dB)
    seen = operator in ("mri-multicoil", "ct-parallel", "blind-deconv")
    extra += methods("Diff-Unfolding" + true_kernel, "diff-unfolding", unfolding, seen)
    return replace(case, methods=(*case.methods, *extra))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", type=Path, help="write the rows as a JSON list")
    parser.add_argument("--volume", default="held-out", help="held-out, template, or a NIfTI file")
    parser.add_argument("--case", action="append", default=[], choices=CASE_NAMES)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--slices", type=int, default=None, help="keep the middle N slices")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="the demo's quick settings (smoke test)")
    parser.add_argument(
        "--posterior-mean",
        type=int,
        default=0,
        metavar="K",
        help="also run each DDS recipe as the mean of K samples (`samples = K`, K times the work)",
    )
    parser.add_argument(
        "--weights", help="another prior card (or shipped name) for the diffusion methods, to compare"
    )
    parser.add_argument(
        "--conditional",
        nargs="?",
        const="bcdm-mri,diff-unfolding",
        metavar="BCDM,UNFOLDING",
        help="add the conditional models (BCDM on MRI, Diff-Unfolding everywhere); optionally other weights",
    )
    parser.add_argument("--only-conditional", action="store_true", help="with --conditional: skip the others")
    args = parser.parse_args()

    truth, affine, description, seen = load_volume(args.volume)
    if args.quick or args.slices:
        truth, affine = middle_slices(truth, affine, 2 if args.quick else args.slices)
        description += f", middle {len(truth)} slices"
    cases = select_cases(args.case, args.quick)
    if args.weights:
        cases = [with_weights(case, args.weights) for case in cases]
    if args.conditional:
        bcdm, unfolding = args.conditional.split(",")
        cases = [with_conditional(case, bcdm, unfolding) for case in cases]
        if args.only_conditional:
            cases = [
                replace(
                    case,
                    methods=tuple(m for m in case.methods if m.recipe and "conditional" in str(m.recipe)),
                )
                for case in cases
            ]
    if args.posterior_mean > 1:
        cases = [with_posterior_mean(case, args.posterior_mean) for case in cases]
    per_seed = []
    for seed in range(args.seeds):
        rows = []
        for case in cases:
            rows += run_case(case, truth, affine, seed=seed, device=args.device)
        per_seed.append(rows)
    rows = summarise(per_seed, description, seen)
    diffusion = {c.name: {m.label for m in c.methods if m.diffusion} for c in cases}
    print(f"volume: {description}{' (seen in training)' if seen else ''}; seeds: {args.seeds}")
    print(markdown_table([{k: v for k, v in r.items() if k not in ("volume", "in_training")} for r in rows]))
    summary = gains(rows, diffusion)
    for gain in summary:  # the JSON rows of the best diffusion methods carry their gain
        for row in rows:
            if row["case"] == gain["case"] and row["method"] == gain["diffusion"]:
                row["gain_db"], row["best_baseline"] = gain["gain_db"], gain["baseline"]
    print()
    print(markdown_table(summary))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
