"""How the demo's hyperparameters were chosen: sweeps on the validation slab, never on the test slab.

    python benchmarks/tune.py [--case NAME ...] [--slices N] [--steps N] [--json PATH] [--device D]
                              [--conditional [BCDM,UNFOLDING] [--data-consistency]]

The `brain-1mm` prior was trained with two axial slabs of the MNI152 template cut out (each with 4
guard slices): the test slab (slices 80-95, the shipped sample, what `benchmarks/quality.py` and
`medrecon demo` report on) and the validation slab (slices 120-127). This script sweeps every
method's hyperparameters of the demo's cases on the middle `--slices` of the validation slab (seed
100, apart from the benchmark's seeds), classical baselines as thoroughly as the diffusion recipe,
and prints the best setting per method (which `medrecon.apps.demo.TUNED` holds). Needs nilearn. The
deblurring case was tuned with `--slices 1` (BlindDPS is the slowest method).
"""

from __future__ import annotations

import argparse
import json
import time
from importlib.resources import files

import nibabel as nib
import numpy as np

from medrecon.apps.demo import BRAIN_PRIOR, crop_to_multiple, middle_slices, sigpy_tv
from medrecon.metrics import magnitude, psnr, relative_error, ssim

VALIDATION = (120, 128)
SEED = 100

MRI = {"name": "mri-multicoil", "coils": 8}
CASES = {
    "mri-4x": ({**MRI, "acceleration": 4}, 0.005, "none"),
    "mri-8x": ({**MRI, "acceleration": 8}, 0.005, "none"),
    "mri-8x-complex": ({**MRI, "acceleration": 8, "complex_image": True}, 0.005, "smooth"),
    "ct-8view": ({"name": "ct-parallel", "views": 8}, 0.05, "none"),
    "ct-limited-90": ({"name": "ct-parallel", "angle_range": [0.0, 90.0], "angle_step": 1.0}, 0.05, "none"),
    "inpaint-70": ({"name": "inpainting", "missing": 0.7, "seed": 1}, 0.01, "none"),
    "sr-4x": ({"name": "downsample", "factor": 4}, 0.01, "none"),
    "deblur-motion": (
        {"name": "blind-deconv", "kernel_type": "motion", "kernel_size": 9, "intensity": 0.5, "seed": 3},
        0.01,
        "none",
    ),
}
#: BlindDPS in the reference code's form at the demo's 100 steps: (zeta, kernel_zeta), a grid, all
#: with the reference's clipped kernel gradient (the demo's straight-through kernel gradient and its
#: kernel_zeta were measured with `benchmarks/blind_kernel.py --seeds 5`: see the TUNED comment)
BLIND_DPS_GRID = [
    (8.0, 0.3),
    (12.0, 0.3),
    (16.0, 0.3),
    (12.0, 1.0),
    (12.0, 0.1),
    (8.0, 0.1),
    (8.0, 0.03),
    (12.0, 0.03),
    (12.0, 3.0),
    (16.0, 1.0),
    (16.0, 3.0),
    (12.0, 0.01),
    (12.0, 0.003),
    (8.0, 0.01),
]
#: restoration cases' weights of TV (their operators have norm <= 1, MRI's and CT's do not)
RESTORATION_TV = (0.001, 0.003, 0.01, 0.03, 0.1)


def validation_volume(slices: int) -> tuple[np.ndarray, np.ndarray]:
    path = files("nilearn.datasets") / "data" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    image = nib.as_closest_canonical(nib.load(str(path)))
    data = np.asarray(image.dataobj, dtype=np.float32).transpose(2, 1, 0) / 255.0
    start, stop = VALIDATION
    shift = np.eye(4)
    shift[2, 3] = start
    return middle_slices(np.ascontiguousarray(data[start:stop]), np.asarray(image.affine) @ shift, slices)


#: DDS is tuned one parameter at a time from this start, in this order (coordinate search)
DDS_START = {"eta": 1.0, "cg_iterations": 5, "gamma": 0.0, "tv_z": 0.002, "result": "refined"}
DDS_AXES = {
    "eta": [0.5, 0.85, 1.0],
    "cg_iterations": [2, 5, 10],
    "gamma": [0.0, 0.03, 0.3],
    "tv_z": [0.0, 0.002, 0.01],
    "result": ["refined", "denoised"],
}


def baselines(case: str) -> dict[str, list[tuple[str, dict | None, object]]]:
    """{method: [(label, recipe, external runner)]}: every setting tried for a classical method."""
    if case.startswith("mri"):
        return {
            "CG-SENSE": [
                (f"iterations={n}", {"sampler": {"name": "cg", "iterations": n}}, None)
                for n in (5, 10, 20, 30)
            ],
            "sigpy TV": [
                (f"lamda={lam}", None, sigpy_tv(lam, 500)) for lam in (0.003, 0.01, 0.02, 0.05, 0.1)
            ],
        }
    weights = (
        RESTORATION_TV if case in ("inpaint-70", "sr-4x") else (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0)
    )
    tv = [
        (
            f"weight={w}",
            {"prior": {"name": "tv", "weight": w}, "sampler": {"name": "admm-tv", "iterations": 100}},
            None,
        )
        for w in weights
    ]
    if case == "deblur-motion":
        blind = {"name": "blind-tv", "iterations": 30, "initial_sigma": 2.0}
        weights = (0.0005, 0.001, 0.002, 0.005)
        recipes = [{"prior": {"name": "tv", "weight": w}, "sampler": blind} for w in weights]
        return {"blind TV": [(f"weight={w}", r, None) for w, r in zip(weights, recipes, strict=True)]}
    return {"ADMM-TV": tv}


def evaluate(m, truth, case, method, label, recipe, external, device) -> dict:
    """One setting of one method on the validation measurement `m`: a row of PSNR, SSIM, seconds."""
    import medrecon

    start = time.perf_counter()
    extras = {}
    if external is not None:
        image = external(m)
    else:
        result = medrecon.reconstruct(recipe, m, seed=SEED, device=device)
        image, extras = result.image.cpu().numpy(), result.extras
    image = magnitude(image)
    row = {
        "case": case,
        "method": method,
        "setting": label,
        "psnr_db": round(psnr(truth, image), 2),
        "ssim": round(ssim(truth, image), 4),
        "seconds": round(time.perf_counter() - start, 1),
    }
    if "kernel" in extras and "kernel" in m.arrays:  # blind deblurring: the kernel's relative error
        row["kernel_rel_error"] = round(relative_error(m.arrays["kernel"], extras["kernel"].cpu().numpy()), 3)
    return row


#: the conditional samplers' settings tried: steps x eta with one sample, then for BCDM runs that
#: average samples (2 x 3 and 3 x 2 in about the time of 5 x 1; 5 x 2), then both with a
#: data-consistency step after each network estimate (2D: CG only; volumes: one ADMM iteration
#: with TV along z, weight tv_z; eta 1, one sample unless said; `result` "denoised" returns the
#: last network estimate instead of its refinement)
PLAIN = {"data_consistency": False}
CONDITIONAL_GRID = [
    {**PLAIN, "steps": steps, "eta": eta, "samples": 1} for steps in (1, 5, 10, 20) for eta in (0.0, 1.0)
]
BCDM_AVERAGING = [
    {**PLAIN, "steps": steps, "eta": 1.0, "samples": k} for steps, k in ((2, 3), (3, 2), (5, 2))
]
CG = {"data_consistency": True, "gamma": 0.0}
DATA_CONSISTENCY_GRID = [
    *({**CG, "steps": steps, "samples": k} for steps, k in ((2, 3), (1, 1), (3, 1), (5, 1), (10, 1))),
    {**CG, "steps": 5, "samples": 1, "result": "denoised"},
    *({**CG, "tv_z": w, "steps": steps, "samples": 1} for w in (0.0005, 0.001, 0.002) for steps in (5, 10)),
    {**CG, "tv_z": 0.0005, "steps": 10, "samples": 1, "result": "denoised"},
    {**CG, "tv_z": 0.0005, "steps": 5, "samples": 2},
    # CG held near the network's estimate: what ill-conditioned operators (blur) need
    *({**CG, "gamma": g, "steps": steps} for g in (0.1, 0.3) for steps in (1, 3)),
    *({**CG, "tv_z": 0.002, "gamma": g, "steps": 5} for g in (0.03, 0.1)),
]
#: BCDM with TV along z, longer runs and runs averaging samples (steps, samples). The sweep's BEST
#: line goes by PSNR alone: TUNED holds the best whose wall time (each row's seconds) stays clearly
#: below that of the DDS + TV-z peer in the same run (up to about 16 steps x samples on this CPU at
#: 2 slices of 233 x 197; 10 x 3 scores higher and takes 1.4-1.9x DDS's time)
BCDM_AVERAGING_TV_Z = [
    *(
        {**CG, "tv_z": 0.001, "steps": steps, "samples": k}
        for steps, k in ((10, 2), (10, 3), (5, 3), (8, 2), (4, 4), (3, 5), (15, 1), (20, 1))
    ),
    {**CG, "tv_z": 0.002, "steps": 10, "samples": 3},
    # around the chosen one sample of 15 steps
    *({**CG, "tv_z": tv_z, "steps": 15, "samples": 1} for tv_z in (0.0005, 0.002)),
    *({**CG, "tv_z": 0.001, "steps": 15, "samples": 1, "rho": rho} for rho in (0.003, 0.03)),
    {**CG, "tv_z": 0.001, "steps": 15, "samples": 1, "result": "denoised"},
]


def conditional_sweep(case: str, weights: list[str], run, only: list[str], consistency: bool) -> list[dict]:
    """BCDM (MRI cases) and Diff-Unfolding (or only those named in `only`) over CONDITIONAL_GRID,
    BCDM also over BCDM_AVERAGING (and with `consistency` DATA_CONSISTENCY_GRID, BCDM also
    BCDM_AVERAGING_TV_Z); the best row of each by PSNR, whatever its time. With `consistency`, the
    peer too: the demo's DDS + TV-z recipe for the case, on the same measurement."""
    from medrecon.apps.demo import select_cases

    if consistency and (not only or "DDS + TV-z" in only):
        (demo_case,) = select_cases([case], False)
        for method in demo_case.methods:
            if method.recipe and method.recipe.get("sampler", {}).get("name") == "dds":
                run(case, method.label, "demo settings", method.recipe, None)
    bcdm, unfolding = weights
    methods = [("Diff-Unfolding", "diff-unfolding", unfolding)]
    if case.startswith("mri"):
        methods.insert(0, ("BCDM", "bcdm", bcdm))
    methods = [m for m in methods if not only or m[0] in only]
    best = []
    for label, sampler, card in methods:
        rows = []
        averaging = BCDM_AVERAGING if sampler == "bcdm" else []
        grid = CONDITIONAL_GRID + averaging
        if consistency:
            grid += DATA_CONSISTENCY_GRID + (BCDM_AVERAGING_TV_Z if sampler == "bcdm" else [])
        for params in grid:
            recipe = {
                "prior": {"name": "conditional", "weights": card},
                "sampler": {"name": sampler, **params},
            }
            rows.append(run(case, label, json.dumps(params), recipe, None))
        best.append(max(rows, key=lambda r: r["psnr_db"]))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--case", action="append", default=[], choices=list(CASES))
    parser.add_argument("--slices", type=int, default=2)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--method", action="append", default=[], help="only these methods")
    parser.add_argument("--json", help="write every row to this JSON list")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dds-start", type=json.loads, default=DDS_START, help="JSON: DDS's first setting")
    parser.add_argument(
        "--dds-axes", type=json.loads, default=DDS_AXES, help="JSON: {parameter: [values]}, searched in order"
    )
    parser.add_argument(
        "--conditional",
        nargs="?",
        const="bcdm-mri,diff-unfolding",
        metavar="BCDM,UNFOLDING",
        help="sweep the conditional samplers' steps and eta instead (their weights optional)",
    )
    parser.add_argument(
        "--data-consistency",
        action="store_true",
        help="with --conditional: also try a data-consistency step (and TV along z) after each estimate",
    )
    args = parser.parse_args()
    import medrecon

    full, full_affine = validation_volume(args.slices)
    rows = []
    for case in args.case or list(CASES):
        op, noise, phase = CASES[case]
        truth, affine = crop_to_multiple(full, full_affine, 4) if case == "sr-4x" else (full, full_affine)
        m = medrecon.simulate(truth, op, noise_std=noise, seed=SEED, affine=affine, phase=phase)

        def run(case, method, label, recipe, external, m=m, truth=truth):
            row = evaluate(m, truth, case, method, label, recipe, external, args.device)
            rows.append(row)
            print(json.dumps(row), flush=True)
            return row

        if args.conditional:
            if phase == "none":
                for row in conditional_sweep(
                    case, args.conditional.split(","), run, args.method, args.data_consistency
                ):
                    print(f"BEST {case} {row['method']}: {row['setting']} {row['psnr_db']} dB", flush=True)
            continue
        for method, options in baselines(case).items():
            if args.method and method not in args.method:
                continue
            best = max((run(case, method, *option) for option in options), key=lambda r: r["psnr_db"])
            print(f"BEST {case} {method}: {best['setting']} {best['psnr_db']} dB", flush=True)
        if case == "deblur-motion":
            if not args.method or "BlindDPS" in args.method:
                for zeta, kernel_zeta in BLIND_DPS_GRID:
                    params = {"form": "reference", "zeta": zeta, "kernel_zeta": kernel_zeta}
                    recipe = {"prior": BRAIN_PRIOR, "sampler": {"name": "blind-dps", "steps": 100, **params}}
                    run(case, "BlindDPS", json.dumps(params), recipe, None)
            continue
        if args.method and "DDS + TV-z" not in args.method:
            continue
        current, scores = dict(args.dds_start), {}
        for axis, values in args.dds_axes.items():
            for value in values:
                params = {**current, axis: value}
                key = json.dumps(params, sort_keys=True)
                if key not in scores:
                    recipe = {"prior": BRAIN_PRIOR, "sampler": {"name": "dds", "steps": args.steps, **params}}
                    scores[key] = run(case, "DDS + TV-z", key, recipe, None)["psnr_db"]
            current = json.loads(
                max(
                    (k for k in scores if all(json.loads(k)[a] == current[a] for a in current if a != axis)),
                    key=scores.get,
                )
            )
        print(
            f"BEST {case} DDS + TV-z: {json.dumps(current)} {scores[json.dumps(current, sort_keys=True)]} dB",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
