"""Finite differences and TV in the core numerics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medrecon.numerics import gradient, gradient_adjoint, inner, tv_prox, tv_value


@pytest.mark.parametrize("axes", [(0,), (1, 2), (0, 1, 2)])
def test_gradient_adjoint_is_exact(axes):
    gen = torch.Generator().manual_seed(0)  # float64: the exactness checked is the algebra's, not round-off
    x = torch.rand(5, 6, 7, generator=gen, dtype=torch.float64)
    g = torch.rand(len(axes), 5, 6, 7, generator=gen, dtype=torch.float64)
    lhs, rhs = inner(gradient(x, axes), g), inner(x, gradient_adjoint(g, axes))
    assert abs(float(lhs - rhs)) / abs(float(lhs)) < 1e-12


def test_isotropic_tv_prox_matches_scikit_image_chambolle():
    from skimage.restoration import denoise_tv_chambolle

    rng = np.random.default_rng(0)
    b = np.zeros((48, 48), np.float32)
    b[10:38, 12:30] = 1
    b += 0.2 * rng.standard_normal(b.shape).astype(np.float32)
    ours = tv_prox(torch.from_numpy(b), 0.15, (0, 1), isotropic=True, iterations=300).numpy()
    ref = denoise_tv_chambolle(b, weight=0.15, eps=1e-6, max_num_iter=2000)
    assert np.linalg.norm(ours - ref) / np.linalg.norm(ref) < 5e-3


@pytest.mark.parametrize("isotropic", [False, True])
def test_prox_minimises_its_objective(isotropic):
    gen = torch.Generator().manual_seed(1)
    b = torch.rand(4, 16, 16, generator=gen)
    x = tv_prox(b, 0.1, (0, 1, 2), isotropic=isotropic, iterations=300)

    def objective(z):
        return float(0.5 * (z - b).pow(2).sum() + 0.1 * tv_value(z, (0, 1, 2), isotropic))

    best = objective(x)
    for _ in range(20):
        assert best <= objective(x + 1e-2 * torch.randn(x.shape, generator=gen)) + 1e-4
    assert best < objective(b)


def test_tv_of_a_constant_is_zero_and_of_a_step_is_its_height_times_length():
    assert float(tv_value(torch.ones(5, 5), (0, 1))) == 0.0
    step = torch.zeros(4, 6)
    step[:, 3:] = 2.0
    assert float(tv_value(step, (0, 1))) == pytest.approx(2.0 * 4)
