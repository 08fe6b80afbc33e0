"""Every built-in operator: reproducible simulation, noise in the units of y, kind of data checked."""

from __future__ import annotations

import pytest
import torch

import medrecon
from medrecon_ct import ParallelBeamCT
from medrecon_deconv import Convolution
from medrecon_mri import MultiCoilMRI

OPERATORS = {
    "mri-multicoil": lambda: MultiCoilMRI((4, 32, 32), coils=4, acceleration=2),
    "ct-parallel": lambda: ParallelBeamCT((4, 32, 32), views=30),
    "blind-deconv": lambda: Convolution((4, 32, 32), kernel_size=5),
}


@pytest.mark.parametrize("name", OPERATORS)
def test_simulate_is_reproducible_with_noise_in_units_of_y(name):
    op = OPERATORS[name]()
    x = torch.rand(op.domain_shape, generator=torch.Generator().manual_seed(0))
    y1, y2, y3 = op.simulate(x, 0.05, seed=1), op.simulate(x, 0.05, seed=1), op.simulate(x, 0.05, seed=2)
    assert torch.equal(y1, y2) and not torch.equal(y1, y3)
    noise = (y1 - op(x))[op(torch.ones(op.domain_shape)) != 0]  # measured entries only
    rms = float(noise.abs().pow(2).mean().sqrt())
    assert rms == pytest.approx(0.05, rel=0.05)


@pytest.mark.parametrize("name", OPERATORS)
def test_data_of_the_wrong_kind_is_refused(name):
    op = OPERATORS[name]()
    wrong_y = torch.zeros(op.range_shape, dtype=torch.float32 if op.is_complex else torch.complex64)
    with pytest.raises(medrecon.InputError, match="measurement must be (real|complex)"):
        medrecon.Problem(op, wrong_y, 0.1)
    with pytest.raises(
        medrecon.InputError, match=r"image must be real \(torch.float32\), got torch.complex64"
    ):
        op.simulate(torch.zeros(op.domain_shape, dtype=torch.complex64), 0.1)


@pytest.mark.parametrize("name", OPERATORS)
def test_autograd_through_the_operator_gives_its_adjoint(name):
    # Gradient-guided samplers (DPS, PiGDM, MMPS, MCG) differentiate through forward(): for real x,
    # grad_x Re<A x, y> must be A^H y.
    op = OPERATORS[name]()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(op.domain_shape, generator=gen).requires_grad_(True)
    y = op(torch.rand(op.domain_shape, generator=gen)).detach()
    (grad,) = torch.autograd.grad((op(x).conj() * y).real.sum(), x)
    torch.testing.assert_close(grad, op.adjoint(y).real, rtol=1e-4, atol=1e-5)
