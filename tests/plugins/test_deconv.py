"""Blind deconvolution operator: exact adjoints in image and kernel, agreement with scipy, kernels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import medrecon
from medrecon.numerics import adjoint_test, inner, operator_norm
from medrecon_deconv import Convolution, gaussian_kernel, motion_kernel, project_kernel

CASES = [((40, 36), 2), ((6, 40, 36), 2), ((12, 20, 16), 3)]


@pytest.mark.parametrize(("shape", "kernel_dims"), CASES)
@pytest.mark.parametrize("boundary", ["zero", "periodic"])
def test_adjoints_in_image_and_kernel_are_exact(shape, kernel_dims, boundary):
    op = Convolution(shape, kernel_size=7, kernel_dims=kernel_dims, boundary=boundary)
    assert adjoint_test(op).relative_error < 1e-5
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(shape, generator=gen), torch.rand(shape, generator=gen)
    lhs = inner(op(x), y).real
    rhs = inner(op.kernel, op.adjoint_kernel(y, x)).real
    assert abs(lhs - rhs) / abs(lhs) < 1e-5


def test_the_kernel_gradient_matches_autograd():
    op = Convolution((24, 24), kernel_size=5, kernel_type="gaussian")
    x, y = torch.rand(24, 24), torch.rand(24, 24)
    k = op.kernel.clone().requires_grad_(True)
    (op.forward(x, k) * y).sum().backward()
    torch.testing.assert_close(op.adjoint_kernel(y, x), k.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(("shape", "kernel_dims"), CASES)
def test_zero_boundary_matches_scipy_fftconvolve_same(shape, kernel_dims):
    from scipy.signal import fftconvolve

    op = Convolution(shape, kernel_size=7, kernel_dims=kernel_dims)
    x = torch.rand(shape)
    kernel = op.kernel.numpy() if kernel_dims == len(shape) else op.kernel.numpy()[None]
    ref = fftconvolve(x.numpy(), kernel, mode="same")
    assert np.linalg.norm(op(x).numpy() - ref) / np.linalg.norm(ref) < 1e-5


def test_periodic_boundary_matches_scipy_wrap():
    from scipy.ndimage import convolve

    op = Convolution((32, 28), kernel_size=9, boundary="periodic")
    x = torch.rand(32, 28)
    ref = convolve(x.numpy(), op.kernel.numpy(), mode="wrap")
    assert np.linalg.norm(op(x).numpy() - ref) / np.linalg.norm(ref) < 1e-5


def test_adjoint_test_catches_a_convolution_used_as_its_own_adjoint():
    class Wrong(Convolution):
        def adjoint(self, y, params=None):
            return self.forward(y, params)

    assert adjoint_test(Wrong((16, 64, 64), kernel_size=9)).relative_error > 1e-5


def test_kernels_are_valid_and_reproducible():
    for kernel in (
        motion_kernel(15, 2, seed=3),
        motion_kernel(9, 3, seed=3),
        gaussian_kernel(11, (3.0, 1.0), 45),
    ):
        assert kernel.min() >= 0 and kernel.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_array_equal(motion_kernel(15, seed=3), motion_kernel(15, seed=3))
    assert not np.array_equal(motion_kernel(15, seed=3), motion_kernel(15, seed=4))
    g = gaussian_kernel(21, (4.0, 1.0), angle=0)
    assert g.sum(axis=1).std() < g.sum(axis=0).std()  # wider along the first axis


def test_projection_onto_valid_kernels():
    k = np.array([[-1.0, 2.0], [1.0, 1.0]])
    np.testing.assert_allclose(project_kernel(k), [[0, 0.5], [0.25, 0.25]])
    t = project_kernel(torch.tensor([[-1.0, -2.0], [-3.0, -4.0]]))
    assert float(t.sum()) == 1.0 and float(t.min()) == 0.0


def test_a_known_kernel_makes_a_plain_linear_operator(host):
    truth = np.zeros((4, 32, 32), dtype=np.float32)
    truth[:, 12:20, 10:22] = 1.0
    op = {"name": "blind-deconv", "kernel_type": "gaussian", "kernel_size": 7, "sigma": [1.5, 1.5]}
    m = medrecon.simulate(truth, op, noise_std=0.001, seed=0, host=host)
    assert m.arrays["kernel"].shape == (7, 7)
    blurred = np.linalg.norm(m.y - truth)
    result = medrecon.reconstruct({"sampler": {"name": "cg", "iterations": 50}}, m, host=host, device="cpu")
    assert np.linalg.norm(result.image.numpy() - truth) < 0.6 * blurred
    assert operator_norm(Convolution((32, 32), kernel=m.arrays["kernel"])) <= 1.0 + 1e-4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shape": (8, 8), "kernel_size": 9}, r"kernel \(9, 9\) is larger than the image \(8, 8\)"),
        ({"shape": (16, 16), "kernel_size": 8}, "kernel_size must be odd"),
        ({"shape": (16, 16), "kernel_dims": 3}, r"a 3D kernel needs a volume \(D, H, W\)"),
        ({"shape": (16, 16), "boundary": "reflect"}, "boundary must be 'zero' or 'periodic'"),
    ],
)
def test_bad_kernels_get_clear_errors(kwargs, message):
    with pytest.raises(medrecon.InputError, match=message):
        Convolution(**kwargs)


def test_blind_operator_capability():
    op = Convolution((16, 16), kernel_size=5)
    assert isinstance(op, medrecon.BlindOperator) and op.params_shape == (5, 5)
    assert medrecon.BLIND_OPERATOR(op, None) and not medrecon.BLIND_OPERATOR(medrecon_mri_op(), None)


def medrecon_mri_op():
    from medrecon_mri import MultiCoilMRI

    return MultiCoilMRI((16, 16), coils=1)
