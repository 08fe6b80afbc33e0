"""On a CUDA machine every operator gives the CPU's results (relative difference < 1e-5)."""

from __future__ import annotations

import pytest
import torch

from medrecon.numerics import adjoint_test
from medrecon_ct import ParallelBeamCT
from medrecon_deconv import Convolution
from medrecon_mri import MultiCoilMRI
from medrecon_restoration import Downsample, Inpainting

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
    "inpainting": lambda: Inpainting((8, 64, 64), missing=0.7),
    "downsample-block": lambda: Downsample((8, 64, 64), factor=4),
    "downsample-gaussian-3d": lambda: Downsample((16, 32, 32), factor=2, method="gaussian", dims=3),
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


SAMPLERS = ["dps", "pigdm", "mmps", "mcg", "dds", "diffusion-mbir", "ccdf", "cg", "admm-tv"]


@pytest.mark.parametrize("name", SAMPLERS)
def test_samplers_give_the_cpu_result_on_cuda(name):
    import medrecon
    from tests.helpers import builtin_host

    host = builtin_host()
    truth = torch.rand(8, 32, 32, generator=torch.Generator().manual_seed(0)).numpy()
    m = medrecon.simulate(truth, {"name": "ct-parallel", "views": 16}, noise_std=0.05, seed=0, host=host)
    sampler = {"name": name}
    if name not in ("cg", "admm-tv"):
        sampler["steps"] = 5 if name != "ccdf" else 3
    prior = {"admm-tv": {"name": "tv", "weight": 0.05}, "cg": None}.get(name, {"name": "gaussian"})
    recipe = {"sampler": sampler, **({"prior": prior} if prior else {})}
    cpu = medrecon.reconstruct(recipe, m, device="cpu", host=host, seed=1).image
    gpu = medrecon.reconstruct(recipe, m, device="cuda", host=host, seed=1).image
    assert gpu.device.type == "cuda"
    assert _rel(gpu, cpu) < 1e-4


@pytest.mark.parametrize("name", ["blind-dds", "blind-tv"])
def test_blind_samplers_give_the_cpu_result_on_cuda(name):
    import medrecon
    from tests.helpers import builtin_host

    host = builtin_host()
    truth = torch.rand(2, 32, 32, generator=torch.Generator().manual_seed(0)).numpy()
    op = {"name": "blind-deconv", "kernel_type": "motion", "kernel_size": 5, "seed": 1}
    m = medrecon.simulate(truth, op, noise_std=0.01, seed=0, host=host)
    recipe = {
        "blind-dds": {"prior": {"name": "gaussian"}, "sampler": {"name": "blind-dds", "steps": 6}},
        "blind-tv": {
            "prior": {"name": "tv", "weight": 0.002},
            "sampler": {"name": "blind-tv", "iterations": 3},
        },
    }[name]
    cpu = medrecon.reconstruct(recipe, m, device="cpu", host=host, seed=1)
    gpu = medrecon.reconstruct(recipe, m, device="cuda", host=host, seed=1)
    assert gpu.image.device.type == "cuda"
    assert _rel(gpu.image, cpu.image) < 1e-4
    assert _rel(gpu.extras["kernel"], cpu.extras["kernel"]) < 1e-4


@pytest.mark.parametrize("sampler", ["dds", "dps"])
def test_the_native_prior_on_complex_mri_gives_the_cpu_result_on_cuda(sampler):
    """brain-1mm on an odd-sized complex image (real and imaginary parts, padding to 8)."""
    import medrecon
    from medrecon.samples import brain_sample
    from tests.helpers import builtin_host

    host = builtin_host()
    volume, affine = brain_sample("1mm")
    op = {"name": "mri-multicoil", "coils": 8, "acceleration": 4, "complex_image": True}
    m = medrecon.simulate(volume[7:9], op, noise_std=0.005, phase="smooth", affine=affine, host=host)
    recipe = {
        "prior": {"name": "diffusion", "weights": "brain-1mm"},
        "sampler": {"name": sampler, "steps": 5},
    }
    cpu = medrecon.reconstruct(recipe, m, device="cpu", host=host, seed=1).image
    gpu = medrecon.reconstruct(recipe, m, device="cuda", host=host, seed=1).image
    assert gpu.is_complex() and gpu.device.type == "cuda"
    assert _rel(gpu, cpu) < 1e-3  # cuDNN's convolutions round differently from the CPU's
