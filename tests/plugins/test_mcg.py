"""MCG: the manifold-constrained gradient and the projection onto the measurement set."""

from __future__ import annotations

import torch

import medrecon
from medrecon.metrics import psnr
from medrecon_priors import Gaussian
from medrecon_samplers import MCG


def test_projection_enforces_the_measurements_and_beats_zero_filling(host, phantom):
    m = medrecon.simulate(
        phantom, {"name": "mri-multicoil", "acceleration": 4}, noise_std=0.0, seed=0, host=host
    )
    op = medrecon.build_operator(m.operator, arrays=m.arrays, host=host)
    problem = medrecon.Problem(op, torch.from_numpy(m.y), 0.0)
    prior = Gaussian(correlation=1.0, variance=0.1, mean=0.2)
    projected = MCG(steps=200).run(problem, prior, seed=0).image
    gradient_only = MCG(steps=200, project=False).run(problem, prior, seed=0).image

    def residual(x):
        return float((op(x) - problem.y).norm() / problem.y.norm())

    zero_filled = psnr(phantom, op.adjoint(problem.y).numpy())
    assert residual(projected) < 0.1 < residual(gradient_only)  # measured 0.057 and 0.36
    assert psnr(phantom, projected.numpy()) > zero_filled + 5  # measured 30.1 vs 17.2 dB
