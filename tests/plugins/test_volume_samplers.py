"""Volumes: ADMM-TV-z data consistency, DiffusionMBIR, and DDS with TV along z."""

from __future__ import annotations

import pytest
import torch

import medrecon
from medrecon.metrics import psnr
from medrecon.numerics import TVSplitState, admm_tv_step, tv_prox, tv_value
from medrecon_priors import Gaussian
from medrecon_samplers import DDS, DiffusionMBIR


def test_admm_tv_step_converges_to_the_tv_z_prox_for_denoising():
    y = torch.rand(6, 8, 8, generator=torch.Generator().manual_seed(0))
    state, x = TVSplitState(), y.clone()
    for _ in range(200):
        x = admm_tv_step(lambda v: v, y, x, state, weight=0.3, rho=1.0, axes=(-3,), cg_iterations=10)
    reference = tv_prox(y, 0.3, (0,), iterations=500)

    def objective(z):
        return float(0.5 * (z - y).pow(2).sum() + 0.3 * tv_value(z, (0,)))

    assert objective(x) == pytest.approx(objective(reference), rel=1e-4)
    torch.testing.assert_close(x, reference, atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def sparse_ct_volume():
    from medrecon.samples import phantom_volume
    from tests.helpers import builtin_host

    truth = phantom_volume((8, 32, 32))
    host = builtin_host()
    m = medrecon.simulate(truth, {"name": "ct-parallel", "views": 8}, noise_std=0.05, seed=0, host=host)
    op = medrecon.build_operator(m.operator, arrays=m.arrays, host=host)
    return truth, medrecon.Problem(op, torch.from_numpy(m.y), 0.05)


@pytest.mark.parametrize(
    ("with_tv", "without_tv"),
    [
        (DiffusionMBIR(steps=100), DiffusionMBIR(steps=100, tv_z=0.0)),
        (DDS(tv_z=0.002, gamma=0.0), DDS(gamma=0.0)),  # the demo's unanchored data consistency
    ],
    ids=["diffusion-mbir", "dds"],
)
def test_tv_along_z_makes_slice_wise_diffusion_coherent_across_slices(sparse_ct_volume, with_tv, without_tv):
    truth, problem = sparse_ct_volume
    prior = Gaussian(correlation=1.0, variance=0.1, mean=0.2)  # a 2D prior: it knows nothing of z
    coherent = with_tv.run(problem, prior, seed=0).image
    independent = without_tv.run(problem, prior, seed=0).image

    def z_variation(v):
        return float((v[1:] - v[:-1]).abs().mean())

    assert psnr(truth, coherent.numpy()) > psnr(truth, independent.numpy()) + 2.0  # measured +3.5 dB
    assert z_variation(coherent) < 0.6 * z_variation(independent)


def test_diffusion_mbir_in_the_papers_predictor_corrector_form(sparse_ct_volume):
    truth, problem = sparse_ct_volume
    prior = Gaussian(correlation=1.0, variance=0.1, mean=0.2)
    result = DiffusionMBIR(steps=30, form="paper").run(problem, prior, seed=0)
    assert result.info["mbir_form"] == "paper" and result.info["nfe"] == 60  # predictor + corrector
    assert result.image.shape == truth.shape and torch.isfinite(result.image).all()
    again = DiffusionMBIR(steps=30, form="paper").run(problem, prior, seed=0)
    torch.testing.assert_close(result.image, again.image)
    with pytest.raises(medrecon.InputError, match="form must be 'vp' or 'paper'"):
        DiffusionMBIR(form="ve")


def test_tv_z_samplers_refuse_2d_images(host):
    from medrecon_deconv import Convolution

    op = Convolution((16, 16), kernel_size=3)
    problem = medrecon.Problem(op, torch.zeros(16, 16), 0.1)
    prior = Gaussian()
    with pytest.raises(medrecon.InputError, match="diffusion-mbir needs a volume"):
        DiffusionMBIR(steps=2).run(problem, prior)
    with pytest.raises(medrecon.InputError, match="dds with tv_z needs a volume"):
        DDS(steps=2, tv_z=0.01).run(problem, prior)
