"""CCDF: a diffused classical estimate and a short reverse path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import medrecon
from medrecon.metrics import psnr
from medrecon_priors import Gaussian
from medrecon_samplers import CCDF, DDS


@pytest.fixture(scope="module")
def mri_problem():
    from medrecon.samples import phantom_volume
    from tests.helpers import builtin_host

    truth = phantom_volume((8, 32, 32))
    host = builtin_host()
    m = medrecon.simulate(
        truth, {"name": "mri-multicoil", "acceleration": 4}, noise_std=0.01, seed=0, host=host
    )
    op = medrecon.build_operator(m.operator, arrays=m.arrays, host=host)
    return truth, medrecon.Problem(op, torch.from_numpy(m.y), 0.01)


def test_ccdf_matches_dds_with_fewer_network_evaluations(mri_problem):
    truth, problem = mri_problem
    prior = Gaussian(correlation=1.0, variance=0.1, mean=0.2)
    ccdf = CCDF().run(problem, prior, seed=0)
    dds = DDS().run(problem, prior, seed=0)
    assert ccdf.info["nfe"] == 20 and dds.info["nfe"] == 50
    assert psnr(truth, ccdf.image.numpy()) > psnr(truth, dds.image.numpy()) - 0.5  # measured 22.3 vs 21.3 dB


def test_ccdf_starts_from_a_given_image(mri_problem):
    truth, problem = mri_problem
    prior = Gaussian(correlation=1.0, variance=0.1, mean=0.2)
    # with one CG step of data consistency the start is most of what there is
    good = CCDF(init_image=truth, t0=0.02, steps=3, cg_iterations=1).run(problem, prior, seed=0).image
    poor = CCDF(init_image=np.zeros_like(truth), t0=0.02, steps=3, cg_iterations=1).run(
        problem, prior, seed=0
    )
    assert psnr(truth, good.numpy()) > psnr(truth, poor.image.numpy()) + 5
    with pytest.raises(medrecon.InputError, match="init_image has shape"):
        CCDF(init_image=np.zeros((4, 4))).run(problem, prior)
    with pytest.raises(medrecon.InputError, match="init 'fbp' needs a CT operator"):
        CCDF(init="fbp").run(problem, prior)
    with pytest.raises(medrecon.InputError, match="do not fit below t0"):
        CCDF(t0=0.01, steps=20).run(problem, prior)
