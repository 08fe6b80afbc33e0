"""The tv prior and the classical samplers built on it: ADMM-TV and FBP."""

from __future__ import annotations

import pytest
import torch

import medrecon
from medrecon.metrics import psnr
from medrecon_priors import TotalVariation
from tests.helpers import builtin_host


@pytest.fixture(scope="module")
def sparse_ct():
    from medrecon.samples import phantom_volume

    truth = phantom_volume((8, 64, 64))
    host = builtin_host()
    m = medrecon.simulate(truth, {"name": "ct-parallel", "views": 8}, noise_std=0.05, seed=0, host=host)
    return truth, m, host


def test_admm_tv_beats_cg_and_fbp_on_8_view_ct(sparse_ct):
    truth, m, host = sparse_ct

    def quality(recipe):
        return psnr(truth, medrecon.reconstruct(recipe, m, host=host, device="cpu").image.numpy())

    tv = quality({"sampler": {"name": "admm-tv"}, "prior": {"name": "tv", "weight": 0.1}})
    cg = quality({"sampler": {"name": "cg"}})
    fbp = quality({"sampler": {"name": "fbp"}})
    assert tv > cg + 2.0 and cg > fbp  # measured: 21.6, 17.8, 13.1 dB


def test_fbp_sampler_is_the_operators_fbp(sparse_ct):
    truth, m, host = sparse_ct
    result = medrecon.reconstruct({"sampler": {"name": "fbp", "window": "hann"}}, m, host=host, device="cpu")
    op = medrecon.build_operator(m.operator, arrays=m.arrays, host=host)
    torch.testing.assert_close(result.image, op.fbp(torch.from_numpy(m.y), window="hann"))


def test_pairings_that_do_not_fit(sparse_ct, mri_measurement, host):
    _, m, ct_host = sparse_ct
    with pytest.raises(
        medrecon.IncompatibleError, match="sampler 'admm-tv' needs a proximal prior, but was given no prior"
    ):
        medrecon.reconstruct({"sampler": {"name": "admm-tv"}}, m, host=ct_host)
    with pytest.raises(
        medrecon.IncompatibleError,
        match="needs an operator with filtered back-projection .* MultiCoilMRI has no fbp",
    ):
        medrecon.reconstruct({"sampler": {"name": "fbp"}}, mri_measurement, host=host)


def test_tv_along_z_smooths_across_slices_only():
    vol = torch.zeros(6, 16, 16)
    vol[:, 4:12, 4:12] = 1.0  # an in-plane edge, constant along z
    vol += 0.1 * torch.randn(6, 16, 16, generator=torch.Generator().manual_seed(0))
    z = TotalVariation(weight=0.5, direction="z").prox(vol, 1.0)
    xy_edges = (z[:, 8, 3] - z[:, 8, 4]).abs().mean()
    assert xy_edges > 0.8  # the in-plane edge survives
    assert (z[1:] - z[:-1]).abs().mean() < 0.3 * (vol[1:] - vol[:-1]).abs().mean()
    with pytest.raises(medrecon.InputError, match="direction 'z' needs a volume"):
        TotalVariation(direction="z").prox(torch.zeros(8, 8), 1.0)
