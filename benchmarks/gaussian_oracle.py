"""Diffusion samplers against the exact posterior of a Gaussian deblurring problem (Pierret and Galerne).

    python benchmarks/gaussian_oracle.py [--case ct-texton|brick] [--intensity grey255|unit]
                                         [--sigma 0.01 0.05] [--samples K] [--size N] [--steps T]
                                         [--sampled-steps S] [--mmps-cg N ...] [--json PATH]

Default case, Pierret and Galerne's setting: the ADSN model (a stationary Gaussian) of a real CT
slice, the N x N centre of pydicom's `CT_small.dcm` with its stored values divided by 255, as an
8-bit image would be (`--intensity grey255`, values 0.5 to 8.6; `unit` scales the crop to [0, 1]
instead: the same sigma is then a noise 8x larger relative to the image); a periodic Gaussian blur of
std 2 px; noise sigma 0.01 and 0.05; the DDPM schedule T = 1000, linear beta 1e-4 .. 0.02. The
posterior is then Gaussian and known in closed form. `--case brick` is the former 32 x 32 brick
texture with a 7 x 7 blur of std 1.5.

Rows, per noise level:
- "exact draws": K samples of the true posterior, the floor that K samples put under every figure.
- The samplers that are linear in y and their noises: their exact output law, computed per
  frequency (medrecon_priors.oracle_laws, `exact = true`) at T steps (the seed's setting) and at S
  steps, and K samples of medrecon's sampler at S steps (`exact = false`; at T = 1000, K = 200
  chains of MMPS's converged CG would take hours on a CPU, and tests/plugins/test_gaussian_oracle.py
  checks that samples and laws agree). They are DPS in Algorithm 8's form (C = sigma^2 / alpha I,
  alpha tuned on the exact W2 as favourably as possible), PiGDM with Tweedie's weight (Algorithm 8,
  C = (1 - a) A A^T + sigma^2 I), PiGDM with the published implementations' weight, and CGDM
  (C = A Cov(x0 | x_t) A^T + sigma^2 I: MMPS with its CG solve run to convergence).
- Samplers that are not linear, sampled only: MMPS at its defaults (100 steps, CG iterations as
  set), DPS with Chung's rule (the project's `dps`), DDS at its defaults and with gamma = 1.
Each row: sampler, case, sigma, steps, exact, samples, mean_rel_error, mean_rel_error_centred
(||m - m_post|| / ||m_post - mu||: the prior mean alone scores 1), cov_rel_error, w2, w2_rel
(W2 / sqrt(tr Sigma_post)), nfe_per_sample, seconds, and where the issue's independent exact
computation gave figures for the row, seed_w2_rel and seed_mean_rel_error_centred.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

import medrecon
from medrecon_deconv import Convolution
from medrecon_priors import Gaussian
from medrecon_priors.oracle_laws import law_errors, law_inputs, sampler_law, tune_dps_alpha
from medrecon_samplers import DDS, DPS, MMPS, PiGDM

#: the seed's figures (issue 12, from an independent exact computation), sigma 0.01
SEED = {
    "dps (Alg. 8, alpha tuned)": {"seed_w2_rel": 2.0, "seed_mean_rel_error_centred": 0.20},
    "pigdm (Tweedie weight = Alg. 8)": {"seed_w2_rel": 0.06, "seed_mean_rel_error_centred": 0.01},
    "cgdm (mmps, CG to convergence)": {"seed_w2_rel": 0.02, "seed_mean_rel_error_centred": 0.0},
}


#: DPS's alpha is tuned among the values whose iterate stays below this standard deviation
MAX_PEAK_STD = 10.0


#: how the CT values become the texton's intensities: "grey255" divides the stored values by 255
#: (the seed's computation: with it, this benchmark's exact laws give the seed's PiGDM and CGDM
#: figures to the digit), "unit" maps the crop's range to [0, 1]
INTENSITIES = ("grey255", "unit")


def ct_texton(size: int, intensity: str = "grey255") -> np.ndarray:
    """The size x size centre of pydicom's CT_small.dcm (a real 128 x 128 CT slice), its stored
    values divided by 255 ("grey255") or its range mapped to [0, 1] ("unit")."""
    import pydicom
    from pydicom.data import get_testdata_file

    if intensity not in INTENSITIES:
        raise ValueError(f"intensity must be one of {INTENSITIES}, got {intensity!r}")
    image = pydicom.dcmread(get_testdata_file("CT_small.dcm")).pixel_array.astype(np.float64)
    lo = (image.shape[0] - size) // 2
    crop = image[lo : lo + size, lo : lo + size]
    if intensity == "grey255":
        return (crop / 255.0).astype(np.float32)
    return ((crop - crop.min()) / (crop.max() - crop.min())).astype(np.float32)


def brick_texture(size: int) -> np.ndarray:
    from skimage.data import brick

    return brick()[:size, :size].astype(np.float32) / 255.0


def setting(case: str, size: int, intensity: str = "grey255"):
    if case == "ct-texton":
        return ct_texton(size, intensity), {"kernel_size": 13, "sigma": (2.0, 2.0)}
    return brick_texture(size), {"kernel_size": 7, "sigma": (1.5, 1.5)}


def linear_samplers(steps: int, samples: int, alpha: float) -> dict[str, tuple[str, dict, object]]:
    """Row name -> (law method, law options, medrecon sampler)."""
    return {
        "dps (Alg. 8, alpha tuned)": (
            "dps",
            {"alpha": alpha},
            DPS(steps=steps, samples=samples, rule="gaussian", alpha=alpha),
        ),
        "pigdm (Tweedie weight = Alg. 8)": (
            "pigdm",
            {},
            PiGDM(steps=steps, samples=samples, weight="tweedie"),
        ),
        "pigdm (published weight)": (
            "pigdm-published",
            {},
            PiGDM(steps=steps, samples=samples, weight="published"),
        ),
        "cgdm (mmps, CG to convergence)": (
            "cgdm",
            {},
            MMPS(steps=steps, samples=samples, cg_iterations=100, cg_tolerance=1e-4),
        ),
    }


def run_case(args, sigma: float) -> list[dict]:
    texture, blur = setting(args.case, args.size, args.intensity)
    prior = Gaussian(texture=texture)
    shape = (args.size, args.size)
    op = Convolution(shape, kernel_type="gaussian", boundary="periodic", **blur)
    truth = prior.sample(shape, torch.Generator().manual_seed(args.seed))
    y = op.simulate(truth, sigma, seed=args.seed + 1)
    problem = medrecon.Problem(op, y, sigma)
    _, posterior = prior.posterior(problem)
    common = {"case": args.case, "intensity": args.intensity if args.case == "ct-texton" else None}
    common["sigma"] = sigma

    rows = []
    start = time.perf_counter()
    exact = posterior.sample(args.samples, torch.Generator().manual_seed(args.seed + 2))
    rows.append(
        {
            "sampler": "exact draws",
            **common,
            "steps": 0,
            "exact": False,
            **posterior.errors(exact, prior.mu),
            "nfe_per_sample": 0,
            "seconds": round(time.perf_counter() - start, 2),
        }
    )
    inputs = law_inputs(prior, problem)
    for steps in sorted({args.steps, args.sampled_steps}, reverse=True):
        rows += linear_rows(args, steps, prior, problem, posterior, inputs, common)
    nonlinear = {
        "mmps (defaults)": MMPS(samples=args.samples),
        **{f"mmps ({n} CG iterations)": MMPS(samples=args.samples, cg_iterations=n) for n in args.mmps_cg},
        "dps (Chung's rule, defaults)": DPS(samples=args.samples),
        "dds (defaults, gamma 0)": DDS(samples=args.samples),
        "dds (gamma 1, the reference's)": DDS(samples=args.samples, gamma=1.0),
    }
    for name, sampler in nonlinear.items():
        rows.append(sampled_row(name, sampler, problem, prior, posterior, args, common, {}))
    return rows


def linear_rows(args, steps, prior, problem, posterior, inputs, common) -> list[dict]:
    """The linear samplers' exact laws at `steps`, and their samples where steps = --sampled-steps."""
    times = DPS(steps=steps).times(prior)

    def dps_w2(alpha: float) -> float:
        """Exact W2 of DPS-Alg. 8 at alpha; inf where its iterate exceeds 10x the unit scale on
        the way (a transient that ends finite in exact arithmetic but not in float32)."""
        law = sampler_law("dps", times=times, alpha=alpha, **inputs)
        value = law_errors(law, posterior, prior.mu)["w2_rel"]
        return value if np.isfinite(value) and law.peak_std <= MAX_PEAK_STD else float("inf")

    alpha = tune_dps_alpha(dps_w2)
    rows = []
    for name, (method, options, sampler) in linear_samplers(steps, args.samples, alpha).items():
        start = time.perf_counter()
        law = sampler_law(method, times=sampler.times(prior), **options, **inputs)
        seed = common["intensity"] == "grey255" and common["sigma"] == 0.01 and steps == 1000
        extra = {"alpha": round(alpha, 5)} if method == "dps" else {}
        rows.append(
            {
                "sampler": name,
                **common,
                "steps": len(sampler.times(prior)),
                "exact": True,
                **law_errors(law, posterior, prior.mu),
                "samples": None,
                "nfe_per_sample": 0,
                "seconds": round(time.perf_counter() - start, 2),
                **(SEED.get(name, {}) if seed else {}),
                **extra,
            }
        )
        if steps == args.sampled_steps:
            rows.append(sampled_row(name, sampler, problem, prior, posterior, args, common, extra))
    return rows


def sampled_row(name, sampler, problem, prior, posterior, args, common, extra) -> dict:
    start = time.perf_counter()
    result = sampler.run(problem, prior, seed=args.seed)
    return {
        "sampler": name,
        **common,
        "steps": result.info["steps"],
        "exact": False,
        **posterior.errors(result.samples, prior.mu),
        "nfe_per_sample": result.info["nfe"] // args.samples,
        "seconds": round(time.perf_counter() - start, 2),
        **extra,
    }


COLUMNS = [
    "sampler",
    "sigma",
    "exact",
    "mean_rel_error_centred",
    "cov_rel_error",
    "w2_rel",
    "samples",
    "steps",
    "seconds",
    "seed_w2_rel",
    "seed_mean_rel_error_centred",
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", help="write the rows as a JSON list to this path")
    parser.add_argument("--case", choices=["ct-texton", "brick"], default="ct-texton")
    parser.add_argument("--intensity", choices=INTENSITIES, default="grey255", help="ct-texton's scaling")
    parser.add_argument("--sigma", type=float, nargs="+", default=[0.01, 0.05])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=1000, help="steps of the exact laws (T = 1000)")
    parser.add_argument(
        "--sampled-steps", type=int, default=100, help="steps of the sampled linear samplers (and their laws)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--mmps-cg", type=int, nargs="*", default=[], help="also sample MMPS with these CG iteration counts"
    )
    args = parser.parse_args()

    rows = [row for sigma in args.sigma for row in run_case(args, sigma)]
    scaling = f" ({args.intensity})" if args.case == "ct-texton" else ""
    print(f"case {args.case}{scaling}, {args.size}x{args.size}, noise {args.sigma}")
    print("  ".join(f"{c:>16}" for c in COLUMNS))
    for r in rows:
        cells = [r.get(c, "") for c in COLUMNS]
        print("  ".join(f"{v:>16.4g}" if isinstance(v, float) else f"{v!s:>16}" for v in cells))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
