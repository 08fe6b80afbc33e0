"""The SVD capability: operators whose structure gives a singular value decomposition declare it,
it reproduces the operator, and the exact solves samplers use follow from it."""

from __future__ import annotations

import pytest
import torch

import medrecon
from medrecon_ct import ParallelBeamCT
from medrecon_deconv import Convolution
from medrecon_restoration import Inpainting
from tests.helpers import NeedsSVD, StandardNormal

SHAPE = (2, 20, 17)  # odd sizes: the DFT's unpaired frequencies


def operators():
    return {
        "inpainting": Inpainting(SHAPE, missing=0.6, seed=2),
        "periodic-blur": Convolution(SHAPE, kernel_type="gaussian", kernel_size=5, boundary="periodic"),
    }


@pytest.mark.parametrize("name", list(operators()))
def test_the_decomposition_reproduces_the_operator_and_its_adjoint(name):
    op = operators()[name]
    d = op.svd()
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(3, *SHAPE, generator=gen), torch.randn(3, *SHAPE, generator=gen)
    assert op.has_svd
    assert bool((d.singular_values >= 0).all())
    torch.testing.assert_close(d.u(d.singular_values * d.v_h(x)), op(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(d.v(d.singular_values * d.u_h(y)), op.adjoint(y), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(d.v(d.v_h(x)), x, atol=1e-5, rtol=1e-5)  # V unitary
    assert float((d.v_h(x).abs() ** 2).sum()) == pytest.approx(float((x**2).sum()), rel=1e-5)


@pytest.mark.parametrize("name", list(operators()))
def test_the_exact_range_solve_from_the_svd_solves_the_system(name):
    op = operators()[name]
    v = torch.randn(*SHAPE, generator=torch.Generator().manual_seed(1))
    scale, shift = 0.7, 0.05
    z = medrecon.Operator.solve_range_system(op, v, scale, shift)  # the SVD default, not an override
    torch.testing.assert_close(scale * op(op.adjoint(z)) + shift * z, v, atol=1e-4, rtol=1e-4)


def test_the_pseudo_inverse_from_the_svd_is_the_minimum_norm_solution():
    op = operators()["inpainting"]
    x = torch.randn(*SHAPE, generator=torch.Generator().manual_seed(3))
    x_plus = op.pseudo_inverse(op(x))
    torch.testing.assert_close(op(x_plus), op(x))
    assert float(x_plus.norm()) < float(x.norm())  # nothing where nothing was observed
    assert float(x_plus[op.mask == 0].abs().max()) == 0.0


def test_a_blur_keeps_no_pseudo_inverse_and_ct_has_no_svd():
    assert operators()["periodic-blur"].pseudo_inverse(torch.zeros(SHAPE)) is None
    assert Convolution(SHAPE, kernel_size=5).svd() is None  # zero boundary: no simple SVD
    assert not ParallelBeamCT((1, 16, 16), views=8).has_svd


def test_a_sampler_requiring_the_svd_runs_on_operators_that_have_one():
    problem = medrecon.Problem(operators()["inpainting"], torch.zeros(SHAPE), 0.1)
    NeedsSVD().run(problem, StandardNormal())
    ct = ParallelBeamCT((1, 16, 16), views=8)
    with pytest.raises(medrecon.IncompatibleError, match="has no SVD"):
        NeedsSVD().run(medrecon.Problem(ct, torch.zeros(ct.range_shape), 0.1), StandardNormal())
