"""The multi-coil SENSE operator: exact adjoint, agreement with sigpy, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from medrecon_mri import MultiCoilMRI, equispaced_mask

import medrecon
from medrecon.numerics import adjoint_test, operator_norm


@pytest.mark.parametrize("shape", [(32, 32), (6, 32, 24)])
@pytest.mark.parametrize("complex_image", [False, True])
def test_adjoint_is_exact(shape, complex_image):
    op = MultiCoilMRI(shape, coils=4, acceleration=4, complex_image=complex_image)
    assert adjoint_test(op).relative_error < 1e-5


def test_norm_is_at_most_one_and_one_when_fully_sampled():
    # Unitary FFT and sum-of-squares-normalised coil maps: ||A|| = 1 fully sampled, <= 1 masked.
    assert operator_norm(MultiCoilMRI((4, 32, 32), coils=8, acceleration=1)) == pytest.approx(1.0, abs=1e-4)
    masked = operator_norm(MultiCoilMRI((4, 32, 32), coils=8, acceleration=4))
    assert 0.98 < masked <= 1.0 + 1e-5


def test_agrees_with_sigpy_sense(phantom):
    import sigpy.mri.linop as sl

    op = MultiCoilMRI(phantom.shape, coils=8, acceleration=4)
    x = torch.from_numpy(phantom)
    y = op(x).numpy()
    back = op.adjoint(torch.from_numpy(y)).numpy()
    for d in (2, 4):
        sense = sl.Sense(op.coil_maps[d].numpy(), weights=op.mask.numpy())
        ref = sense * phantom[d].astype(np.complex64)
        assert np.linalg.norm(y[d] - ref) / np.linalg.norm(ref) < 1e-5
        ref_back = (sense.H * y[d]).real
        assert np.linalg.norm(back[d] - ref_back) / np.linalg.norm(ref_back) < 1e-5


@pytest.mark.parametrize("width", [256, 320, 368])
@pytest.mark.parametrize("acceleration", [4, 8])
def test_realised_acceleration_is_within_5_percent(width, acceleration):
    mask = equispaced_mask(width, acceleration, 0.08 if acceleration == 4 else 0.04)
    realised = width / mask.sum()
    assert abs(realised - acceleration) / acceleration < 0.05
    centre = width // 2
    assert mask[centre - 3 : centre + 4].all()  # the fully sampled centre


def test_shape_mismatches_get_clear_errors():
    with pytest.raises(
        medrecon.InputError, match=r"mask shape \(32, 30\) does not match the image: expected \(32, 32\)"
    ):
        MultiCoilMRI((4, 32, 32), mask=np.ones((32, 30)))
    with pytest.raises(
        medrecon.InputError, match=r"coil maps shape \(4, 8, 16, 16\) does not match the image \(4, 32, 32\)"
    ):
        MultiCoilMRI((4, 32, 32), coil_maps=np.ones((4, 8, 16, 16), dtype=np.complex64))
    op = MultiCoilMRI((4, 32, 32), coils=8)
    with pytest.raises(medrecon.InputError, match=r"measurement shape \(4, 6, 32, 32\) does not match"):
        op.check_range(torch.zeros(4, 6, 32, 32, dtype=torch.complex64))


def test_real_image_operator_rejects_a_complex_image():
    op = MultiCoilMRI((4, 16, 16), coils=2)
    with pytest.raises(
        medrecon.InputError, match=r"image must be real \(torch.float32\), got torch.complex64"
    ):
        op.simulate(torch.zeros(4, 16, 16, dtype=torch.complex64), 0.0)


def test_simulated_noise_lies_only_on_sampled_lines():
    op = MultiCoilMRI((2, 32, 32), coils=4, acceleration=4)
    y = op.simulate(torch.zeros(2, 32, 32), noise_std=1.0, seed=0)
    unsampled = op.mask == 0
    assert torch.count_nonzero(y[..., unsampled]) == 0
    assert torch.count_nonzero(y[..., ~unsampled]) == y[..., ~unsampled].numel()
