"""The multi-coil SENSE operator: exact adjoint, agreement with sigpy, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import medrecon
from medrecon.numerics import adjoint_test, operator_norm
from medrecon_mri import MultiCoilMRI, equispaced_mask


@pytest.mark.parametrize("shape", [(32, 32), (6, 32, 24), (3, 31, 27)])  # odd: explicit shifts
@pytest.mark.parametrize("complex_image", [False, True])
def test_adjoint_is_exact(shape, complex_image):
    op = MultiCoilMRI(shape, coils=4, acceleration=4, complex_image=complex_image)
    assert adjoint_test(op).relative_error < 1e-5


def test_norm_is_at_most_one_and_one_when_fully_sampled():
    # Unitary FFT and sum-of-squares-normalised coil maps: ||A|| = 1 fully sampled, <= 1 masked.
    assert operator_norm(MultiCoilMRI((4, 32, 32), coils=8, acceleration=1)) == pytest.approx(1.0, abs=1e-4)
    masked = operator_norm(MultiCoilMRI((4, 32, 32), coils=8, acceleration=4))
    assert 0.98 < masked <= 1.0 + 1e-5


@pytest.mark.parametrize("odd", [False, True])
def test_agrees_with_sigpy_sense(phantom, odd):
    import sigpy.mri.linop as sl

    if odd:  # odd sizes take the explicit-shift path instead of the folded modulation
        phantom = np.ascontiguousarray(phantom[:, :31, :29])
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


@pytest.mark.parametrize("mask_type", ["equispaced", "random", "poisson"])
@pytest.mark.parametrize("acceleration", [4, 8])
def test_every_2d_mask_type_reaches_the_requested_acceleration(mask_type, acceleration):
    op = MultiCoilMRI(
        (256, 256), coils=1, acceleration=acceleration, center_fraction=0.04, mask_type=mask_type
    )
    realised = op.describe()["acceleration_realised"]
    assert abs(realised - acceleration) / acceleration < 0.05
    assert op.describe()["acceleration_requested"] == acceleration


@pytest.mark.parametrize("mask_type", ["random", "poisson"])
def test_3d_sampling_undersamples_both_phase_encode_directions(mask_type):
    op = MultiCoilMRI(
        (32, 24, 40), coils=2, acceleration=4, center_fraction=0.2, mask_type=mask_type, sampling="3d"
    )
    mask = op.mask.numpy()
    assert mask.shape == (32, 24, 40)
    assert (mask == mask[:, :1, :]).all()  # readout (H) fully sampled
    plane = mask[:, 0, :]
    assert plane.any(axis=0).sum() > plane.all(axis=0).sum()  # W undersampled ...
    assert plane.any(axis=1).sum() > plane.all(axis=1).sum()  # ... and D too
    assert abs(op.realised_acceleration - 4) / 4 < 0.05
    assert op.slice_axis is None  # a 3D acquisition is not slice-separable
    assert adjoint_test(op).relative_error < 1e-5


def test_3d_sampling_agrees_with_sigpy_sense():
    import sigpy.mri.linop as sl

    op = MultiCoilMRI(
        (16, 24, 20), coils=4, acceleration=3, center_fraction=0.25, mask_type="poisson", sampling="3d"
    )
    x = torch.rand(16, 24, 20)
    sense = sl.Sense(op.coil_maps.numpy().transpose(1, 0, 2, 3), weights=op.mask.numpy())  # maps (C, D, H, W)
    ref = (sense * x.numpy().astype(np.complex64)).transpose(1, 0, 2, 3)
    ours = op(x).numpy()
    assert np.linalg.norm(ours - ref) / np.linalg.norm(ref) < 1e-5


def test_masks_can_vary_per_slice():
    op = MultiCoilMRI((4, 32, 64), coils=2, mask_type="random", vary_per_slice=True)
    assert op.mask.shape == (4, 32, 64)
    assert not torch.equal(op.mask[0], op.mask[1])
    assert adjoint_test(op).relative_error < 1e-5
    same = MultiCoilMRI((4, 32, 64), coils=2, mask_type="random")
    assert same.mask.shape == (32, 64)


def test_masks_are_reproducible_from_their_seed():
    a = MultiCoilMRI((32, 64), coils=1, mask_type="random", seed=5).mask
    b = MultiCoilMRI((32, 64), coils=1, mask_type="random", seed=5).mask
    c = MultiCoilMRI((32, 64), coils=1, mask_type="random", seed=6).mask
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_impossible_3d_requests_get_clear_errors():
    with pytest.raises(medrecon.InputError, match=r"3d sampling needs a volume \(D, H, W\)"):
        MultiCoilMRI((32, 32), sampling="3d", mask_type="poisson")
    with pytest.raises(medrecon.InputError, match="3d sampling needs mask_type 'poisson' or 'random'"):
        MultiCoilMRI((8, 32, 32), sampling="3d")


def test_3d_espirit_maps_from_the_measurement(host):
    from medrecon.metrics import psnr
    from medrecon.samples import phantom_volume

    truth = phantom_volume((24, 32, 32))
    op = {
        "name": "mri-multicoil",
        "acceleration": 3,
        "center_fraction": 0.35,
        "mask_type": "poisson",
        "sampling": "3d",
    }
    m = medrecon.simulate(truth, op, noise_std=0.001, seed=0, host=host)
    assert m.attrs["simulation"]["operator"]["sampling"] == "3d"
    calibrated = medrecon.Measurement(
        y=m.y,
        operator=medrecon.ComponentRecipe("mri-multicoil", {"sampling": "3d", "complex_image": True}),
        noise_std=0.001,
        arrays={"mask": m.arrays["mask"]},
    )
    result = medrecon.reconstruct({"sampler": {"name": "cg"}}, calibrated, host=host, device="cpu")
    assert result.info["operator"]["coil_maps"] == "espirit"
    zero_filled = medrecon.reconstruct({"sampler": {"name": "adjoint"}}, m, host=host, device="cpu")
    assert psnr(truth, np.abs(result.image.numpy())) > psnr(truth, zero_filled.image.numpy()) + 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"shape": (6, 32, 32)},
        {"shape": (6, 32, 32), "mask_type": "random", "vary_per_slice": True},
        {"shape": (8, 32, 32), "mask_type": "poisson", "sampling": "3d", "center_fraction": 0.3},
        {"shape": (32, 32)},
    ],
)
def test_a_batch_gives_what_each_item_gives(kwargs, monkeypatch):
    import medrecon_mri.sense as sense

    monkeypatch.setattr(sense, "CPU_PART_BYTES", 1)  # force the smallest parts: one slice / coil
    op = MultiCoilMRI(coils=3, **kwargs)
    x = torch.rand(2, *op.domain_shape)
    y = op(x)
    assert y.shape == (2, *op.range_shape)
    back = op.adjoint(y)
    for i in range(2):
        torch.testing.assert_close(y[i], op(x[i]))
        torch.testing.assert_close(back[i], op.adjoint(y[i]))
    assert adjoint_test(op).relative_error < 1e-5
    monkeypatch.setattr(sense, "CPU_PART_BYTES", 2**40)  # one part: the same numbers
    torch.testing.assert_close(op(x), y)
    torch.testing.assert_close(op.adjoint(y), back)


@pytest.mark.parametrize(
    ("shape", "kwargs"),
    [
        ((4, 64, 48), {}),  # line mask: only the phase-encode FFT
        ((3, 31, 27), {"complex_image": True}),  # odd sizes
        ((3, 32, 32), {"mask_type": "poisson"}),  # 2D-undersampled: both FFT axes
        ((4, 32, 30), {"vary_per_slice": True, "complex_image": True}),
        ((6, 24, 20), {"sampling": "3d", "mask_type": "poisson"}),
        ((31, 29), {}),
    ],
)
def test_fast_gram_is_adjoint_of_forward(shape, kwargs):
    # The CG steps of DDS and DiffusionMBIR use A^H A in one pass (fewer FFT axes where the readout
    # is fully sampled); it must be the same operator as the two applications, batched or not.
    op = MultiCoilMRI(shape, coils=4, acceleration=4, **kwargs)
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0)).to(op.domain_dtype)
    with torch.no_grad():
        reference = op.adjoint(op.forward(x))
        fast = op.gram(x)
    assert fast.shape == reference.shape and fast.dtype == reference.dtype
    assert torch.allclose(fast, reference, atol=1e-5 * float(reference.abs().max()))
    assert torch.allclose(op.gram(x[0]), reference[0], atol=1e-5 * float(reference.abs().max()))


def test_a_given_mask_claims_no_requested_acceleration():
    # A file's own mask (fully sampled here) was made to no requested acceleration: the sidecar
    # says what is realised only (it once claimed the 4x default of generated masks).
    op = MultiCoilMRI((2, 16, 16), coils=2, mask=np.ones((16, 16), np.float32))
    described = op.describe()
    assert "acceleration_requested" not in described and described["acceleration_realised"] == 1.0
