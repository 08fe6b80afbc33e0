"""On a CUDA machine every operator gives the CPU's results (relative difference < 1e-5)."""

from __future__ import annotations

import pytest
import torch

from medrecon.numerics import adjoint_test
from medrecon_ct import ParallelBeamCT
from medrecon_deconv import Convolution
from medrecon_mri import MultiCoilMRI

pytestmark = pytest.mark.gpu

OPERATORS = {
    "mri-2d": lambda: MultiCoilMRI((8, 64, 64), coils=8, acceleration=4),
    "mri-3d": lambda: MultiCoilMRI(
        (16, 32, 32), coils=4, mask_type="poisson", sampling="3d", center_fraction=0.25
    ),
    "ct-sparse": lambda: ParallelBeamCT((8, 64, 64), views=8),
    "ct-limited": lambda: ParallelBeamCT((8, 64, 64), angle_range=(0, 90)),
    "deconv-2d": lambda: Convolution((8, 64, 64), kernel_size=9),
    "deconv-3d": lambda: Convolution((16, 32, 32), kernel_size=7, kernel_dims=3, boundary="periodic"),
}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.cpu() - b.cpu()).abs().norm() / b.cpu().abs().norm())


@pytest.mark.parametrize("name", OPERATORS)
def test_cuda_matches_cpu(name):
    cpu = OPERATORS[name]()
    gpu = OPERATORS[name]().to("cuda")
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(cpu.domain_shape, generator=gen)
    y = cpu(x)
    assert _rel(gpu(x.cuda()), y) < 1e-5
    assert _rel(gpu.adjoint(y.cuda()), cpu.adjoint(y)) < 1e-5
    assert adjoint_test(gpu).relative_error < 1e-5
