"""Shared numerics: the adjoint test and norm every operator test uses, CG, centered FFTs."""

from __future__ import annotations

import numpy as np
import torch

from medrecon.numerics import adjoint_test, conjugate_gradient, fft2c, ifft2c, operator_norm
from tests.helpers import Scale, WrongAdjoint


def test_adjoint_test_passes_a_correct_adjoint_and_catches_a_wrong_one():
    assert adjoint_test(Scale((8, 8))).relative_error < 1e-6
    assert adjoint_test(WrongAdjoint((8, 8))).relative_error > 5e-3


def test_operator_norm_of_a_known_operator():
    assert abs(operator_norm(Scale((8, 8), c=3.0)) - 3.0) < 1e-5


def test_conjugate_gradient_solves_a_positive_definite_system():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(20, 20, generator=gen, dtype=torch.float64)
    m = a @ a.T + 20 * torch.eye(20, dtype=torch.float64)
    b = torch.randn(20, generator=gen, dtype=torch.float64)
    x = conjugate_gradient(lambda v: m @ v, b, iterations=40, tol=1e-12)
    torch.testing.assert_close(x, torch.linalg.solve(m, b))


def test_conjugate_gradient_on_complex_hermitian_systems():
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(16, 16, generator=gen, dtype=torch.complex128)
    m = a @ a.conj().T + 16 * torch.eye(16, dtype=torch.complex128)
    b = torch.randn(16, generator=gen, dtype=torch.complex128)
    x = conjugate_gradient(lambda v: m @ v, b, iterations=40, tol=1e-12)
    torch.testing.assert_close(x, torch.linalg.solve(m, b))


def test_centered_fft_is_unitary_and_matches_numpy_and_sigpy():
    import sigpy

    x = torch.randn(3, 16, 12, dtype=torch.complex64)
    k = fft2c(x)
    torch.testing.assert_close(ifft2c(k), x, atol=1e-5, rtol=1e-5)
    assert abs(float(k.norm() / x.norm()) - 1) < 1e-5
    reference = np.fft.fftshift(
        np.fft.fft2(np.fft.ifftshift(x.numpy(), axes=(-2, -1)), norm="ortho"), axes=(-2, -1)
    )
    np.testing.assert_allclose(k.numpy(), reference, atol=1e-5)
    np.testing.assert_allclose(k.numpy(), sigpy.fft(x.numpy(), axes=(-2, -1)), atol=1e-5)
