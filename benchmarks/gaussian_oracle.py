"""Diffusion samplers against the exact posterior of a Gaussian problem (Pierret and Galerne's study).

    python benchmarks/gaussian_oracle.py [--json PATH] [--samples K] [--sigma S] [--size N]

Prior: the ADSN model of a brick texture (scikit-image's bundled `brick`), N x N; operator: a
periodic Gaussian blur; noise sigma between 0.01 and 0.05. The posterior is then Gaussian and known
in closed form. For each sampler, K samples are drawn and compared with it: error of the empirical
mean and covariance, and the 2-Wasserstein distance between Gaussians (see GaussianPosterior.errors).
The row "exact draws" is K samples of the exact posterior itself: the floor that sampling error
alone puts under every figure. Prints a table; --json writes a JSON list of rows with the keys
sampler, mean_rel_error, cov_rel_error, w2, samples (and steps, nfe_per_sample, seconds).
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
from medrecon_samplers import DDS, DPS, MMPS, PiGDM


def brick_texture(size: int) -> np.ndarray:
    from skimage.data import brick

    return brick()[:size, :size].astype(np.float32) / 255.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", help="write the rows as a JSON list to this path")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--sigma", type=float, default=0.02, help="noise standard deviation (0.01 .. 0.05)")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    prior = Gaussian(texture=brick_texture(args.size))
    op = Convolution(
        (args.size, args.size), kernel_type="gaussian", kernel_size=7, sigma=(1.5, 1.5), boundary="periodic"
    )
    truth = prior.sample((args.size, args.size), torch.Generator().manual_seed(args.seed))
    problem = medrecon.Problem(op, op.simulate(truth, args.sigma, seed=args.seed + 1), args.sigma)
    _, posterior = prior.posterior(problem)

    rows = []
    start = time.perf_counter()
    exact = posterior.sample(args.samples, torch.Generator().manual_seed(args.seed + 2))
    rows.append(
        {
            "sampler": "exact draws",
            **posterior.errors(exact, prior.mu),
            "steps": 0,
            "nfe_per_sample": 0,
            "seconds": round(time.perf_counter() - start, 2),
        }
    )
    samplers = {
        "mmps": MMPS(samples=args.samples),
        "pigdm": PiGDM(samples=args.samples),
        "pigdm (tweedie weight)": PiGDM(samples=args.samples, weight="tweedie"),
        "dds": DDS(samples=args.samples),
        "dds (ddim eta)": DDS(samples=args.samples, eta_rule="ddim"),
        "dps": DPS(samples=args.samples),
        "mmps (1000 steps)": MMPS(steps=1000, samples=args.samples),
    }
    for name, sampler in samplers.items():
        start = time.perf_counter()
        result = sampler.run(problem, prior, seed=args.seed)
        seconds = time.perf_counter() - start
        rows.append(
            {
                "sampler": name,
                **posterior.errors(result.samples, prior.mu),
                "steps": result.info["steps"],
                "nfe_per_sample": result.info["nfe"] // args.samples,
                "seconds": round(seconds, 2),
            }
        )
    cols = [
        "sampler",
        "mean_rel_error",
        "mean_rel_error_centred",
        "cov_rel_error",
        "w2",
        "w2_rel",
        "samples",
        "steps",
        "nfe_per_sample",
        "seconds",
    ]
    print(f"ADSN brick {args.size}x{args.size}, periodic Gaussian blur (7x7, sigma 1.5), noise {args.sigma}")
    print("  ".join(f"{c:>18}" for c in cols))
    for r in rows:
        print("  ".join(f"{r[c]:>18.4g}" if isinstance(r[c], float) else f"{r[c]!s:>18}" for c in cols))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
