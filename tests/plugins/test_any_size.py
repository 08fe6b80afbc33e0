"""Diffusion at the sizes users bring: odd slice sizes and counts, complex images, physical scale."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

import medrecon
from medrecon_priors import load_prior, save_prior
from tests.helpers import TINY_CONV_UNET

ARCH = {"class": "DiffusionModelUNet", **TINY_CONV_UNET}
SCHEDULE = {"scheduler": "DDPMScheduler", "num_train_timesteps": 1000, "schedule": "linear_beta"}


def native_card(spacing=(1.0, 1.0)) -> dict:
    """A card as `train-prior --native` writes it: zero background, real and imaginary parts."""
    return {
        "architecture": ARCH,
        "schedule": SCHEDULE,
        "prediction": "epsilon",
        "image_size": None,
        "intensity": {"data_range": [-1.0, 1.0], "background": 0.0, "complex": True},
        "pixel_spacing_mm": list(spacing),
        "size_multiple": 4,
        "min_size": 4,
        "training": {"data": "none: untrained test network"},
    }


@pytest.fixture(scope="module")
def native_prior(tmp_path_factory):
    from medrecon.prior_card import build_unet

    torch.manual_seed(0)
    return save_prior(tmp_path_factory.mktemp("native") / "tiny-native", build_unet(ARCH), native_card())


#: every diffusion sampler, with settings small enough for a CPU test
SAMPLERS = {
    "dds": {"steps": 3},
    "dds-tv-z": {"name": "dds", "steps": 3, "tv_z": 0.002},
    "diffusion-mbir": {"steps": 3},
    "ccdf": {"steps": 3, "t0": 0.1},
    "dps": {"steps": 3},
    "pigdm": {"steps": 3},
    "mmps": {"steps": 3, "cg_iterations": 2},
    "mcg": {"steps": 3},
}


def recipe(prior_path, key: str) -> dict:
    params = dict(SAMPLERS[key])
    name = params.pop("name", key)
    return {
        "prior": {"name": "diffusion", "weights": str(prior_path), "slice_batch": 4},
        "sampler": {"name": name, **params},
    }


@pytest.mark.parametrize("shape", [(3, 61, 61), (2, 233, 197)], ids=["3x61x61", "2x233x197"])
@pytest.mark.parametrize("key", list(SAMPLERS))
def test_every_diffusion_sampler_takes_odd_sizes(native_prior, host, shape, key):
    truth = np.random.default_rng(0).random(shape, dtype=np.float32)
    m = medrecon.simulate(
        truth, {"name": "mri-multicoil", "coils": 2, "acceleration": 2}, noise_std=0.01, host=host
    )
    result = medrecon.reconstruct(recipe(native_prior, key), m, host=host, device="cpu")
    assert tuple(result.image.shape) == shape and torch.isfinite(result.image).all()


def test_padding_gives_the_result_on_the_input_grid(native_prior):
    """The network sees the slice padded to its size multiple; the output is cropped back exactly,
    so a slice embedded in a larger one (away from the border) gives the same values inside."""
    prior = load_prior(native_prior)
    x = torch.randn(2, 37, 45, generator=torch.Generator().manual_seed(0))
    out = prior.predict_eps(x, 500)
    assert out.shape == x.shape and torch.isfinite(out).all()
    padded = torch.nn.functional.pad(x[None], (1, 2, 1, 2), mode="reflect")[0]  # 40 x 48: no padding needed
    torch.testing.assert_close(out, prior.predict_eps(padded, 500)[:, 1:-2, 1:-2])


def test_a_slice_below_the_networks_minimum_is_refused_with_the_minimum(native_prior, host):
    truth = np.random.default_rng(0).random((2, 3, 30), dtype=np.float32)
    m = medrecon.simulate(
        truth, {"name": "mri-multicoil", "coils": 2, "acceleration": 2}, noise_std=0.01, host=host
    )
    with pytest.raises(medrecon.InputError, match=r"3 x 30 pixels are too small.*at least 4 x 4"):
        medrecon.reconstruct(recipe(native_prior, "dds"), m, host=host, device="cpu")


def test_complex_images_are_denoised_as_real_and_imaginary_parts(native_prior):
    prior = load_prior(native_prior)
    gen = torch.Generator().manual_seed(1)
    real, imag = torch.randn(2, 3, 24, 20, generator=gen)
    out = prior.predict_eps(torch.complex(real, imag), 400)
    torch.testing.assert_close(out.real, prior.predict_eps(real, 400))
    torch.testing.assert_close(out.imag, prior.predict_eps(imag, 400))


@pytest.mark.parametrize("key", ["dds", "dps", "diffusion-mbir"])
def test_complex_mri_reaches_the_diffusion_samplers(native_prior, host, key):
    truth = np.random.default_rng(0).random((2, 32, 28), dtype=np.float32)
    op = {"name": "mri-multicoil", "coils": 2, "acceleration": 2, "complex_image": True}
    m = medrecon.simulate(truth, op, noise_std=0.01, phase="smooth", seed=1, host=host)
    assert np.iscomplexobj(m.ground_truth) and np.abs(np.angle(m.ground_truth)).max() > 0.3
    result = medrecon.reconstruct(recipe(native_prior, key), m, host=host, device="cpu")
    assert result.image.is_complex() and tuple(result.image.shape) == truth.shape
    assert torch.isfinite(torch.view_as_real(result.image)).all()
    assert result.info["intensity"]["offset"] == 0.0  # a zero-background map only scales


def test_the_background_phase_is_taken_out_for_the_prior_and_put_back(native_prior, host):
    from medrecon.api import build_operator
    from medrecon.numerics import adjoint_test
    from medrecon.numerics.intensity import PhaseModulated, background_phase, estimate_intensity_map
    from medrecon.samples import brain_sample

    volume, _ = brain_sample("1mm")
    truth = np.ascontiguousarray(volume[7:9])  # 2 x 233 x 197: two whole slices at 1 mm
    op = {"name": "mri-multicoil", "coils": 4, "acceleration": 8, "complex_image": True}
    m = medrecon.simulate(truth, op, noise_std=0.005, phase="smooth", seed=3, host=host)
    y = torch.as_tensor(m.y)
    operator = build_operator(m.operator, shape=truth.shape, arrays=m.arrays, measurement=y, host=host)
    problem = medrecon.Problem(operator, y, 0.005)
    mapping = estimate_intensity_map(problem, (-1.0, 1.0), background=0.0, demodulate=True)
    # the phase estimated from an 8x CG estimate is the simulated one where there is tissue
    truth_phase = np.angle(m.ground_truth)
    error = np.angle(np.exp(1j * (mapping.phase.numpy() - truth_phase)))
    tissue = truth > 0.2
    assert np.abs(error[tissue]).mean() < 0.03 and np.percentile(np.abs(error[tissue]), 99) < 0.15
    # the prior's operator A diag(exp(i phi)) is linear with a matched adjoint
    modulated = PhaseModulated(problem.operator, mapping.phase)
    assert adjoint_test(modulated).relative_error < 1e-5
    # the model-space image is nearly real; mapped back it is the physical complex image
    z = torch.as_tensor(m.ground_truth) * torch.exp(-1j * mapping.phase) / mapping.scale
    assert float(z.imag.abs().mean()) < 0.1 * float(z.real.abs().mean())
    torch.testing.assert_close(mapping.to_physical(z), torch.as_tensor(m.ground_truth), atol=1e-5, rtol=1e-4)
    assert background_phase(torch.ones(3, 8, 6, dtype=torch.complex64)).abs().max() < 1e-6


def test_the_prior_can_keep_the_phase_or_remove_it(native_prior, host):
    truth = np.random.default_rng(0).random((2, 32, 28), dtype=np.float32)
    op = {"name": "mri-multicoil", "coils": 2, "acceleration": 2, "complex_image": True}
    m = medrecon.simulate(truth, op, noise_std=0.01, phase="smooth", seed=1, host=host)
    runs = {}
    for phase in ("remove", "keep"):
        r = recipe(native_prior, "dds")
        r["prior"]["phase"] = phase
        runs[phase] = medrecon.reconstruct(r, m, host=host, device="cpu")
    assert "phase" in runs["remove"].info["intensity"] and "phase" not in runs["keep"].info["intensity"]
    assert not torch.allclose(runs["remove"].image, runs["keep"].image)
    bad = recipe(native_prior, "dds")
    bad["prior"]["phase"] = "drop"
    with pytest.raises(
        medrecon.InputError, match="parameter 'phase' of prior 'diffusion' expects 'remove' | 'keep'"
    ):
        medrecon.reconstruct(bad, m, host=host, device="cpu")


def test_a_real_only_prior_refuses_complex_images_naming_what_would_work(host, tmp_path):
    from medrecon.prior_card import build_unet

    card = {**native_card(), "intensity": {"data_range": [-1.0, 1.0]}}
    path = save_prior(tmp_path / "real-only", build_unet(ARCH), card)
    truth = np.random.default_rng(0).random((2, 16, 16), dtype=np.float32)
    op = {"name": "mri-multicoil", "coils": 2, "acceleration": 2, "complex_image": True}
    m = medrecon.simulate(truth, op, noise_std=0.01, phase="smooth", host=host)
    with pytest.raises(medrecon.InputError, match="models real images only.*brain-1mm"):
        medrecon.reconstruct(recipe(path, "dds"), m, host=host, device="cpu")


def test_data_far_from_the_priors_pixel_size_is_warned_about(native_prior, host, caplog):
    truth = np.random.default_rng(0).random((2, 16, 16), dtype=np.float32)
    op = {"name": "mri-multicoil", "coils": 2, "acceleration": 2}
    near = medrecon.simulate(truth, op, noise_std=0.01, affine=np.diag([1.1, 0.9, 3.0, 1.0]), host=host)
    far = medrecon.simulate(truth, op, noise_std=0.01, affine=np.diag([2.8, 2.8, 1.0, 1.0]), host=host)
    quiet = medrecon.reconstruct(recipe(native_prior, "dds"), near, host=host, device="cpu")
    assert "warnings" not in quiet.info  # the slice thickness (3 mm) is not in-plane
    with caplog.at_level(logging.WARNING):
        loud = medrecon.reconstruct(recipe(native_prior, "dds"), far, host=host, device="cpu")
    [warning] = loud.info["warnings"]
    assert "2.8 x 2.8 mm" in warning and "1 x 1 mm" in warning and "tiny-native" in warning
    assert warning in caplog.text


def test_a_fastmri_style_file_reaches_dds_as_a_complex_image(native_prior, host, tmp_path):
    """Multi-coil k-space (slices x coils x H x W, complex64) of a complex image with a smooth
    phase, undersampled 4x with a calibration region, read as fastMRI files are (ESPIRiT maps)."""
    import h5py

    from medrecon.metrics import psnr
    from medrecon.samples import phantom_volume

    truth = phantom_volume((2, 48, 40))
    op = {
        "name": "mri-multicoil",
        "coils": 4,
        "acceleration": 4,
        "center_fraction": 0.25,
        "complex_image": True,
    }
    m = medrecon.simulate(truth, op, noise_std=0.002, phase="smooth", seed=2, host=host)
    path = tmp_path / "file_brain_AXT2.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=m.y.astype(np.complex64))
    bundle = medrecon.load_bundle(path)
    recipe = {
        "operator": {"name": "mri-multicoil", "complex_image": True},
        "prior": {"name": "diffusion", "weights": str(native_prior)},
        "sampler": {"name": "dds", "steps": 5},
    }
    result = medrecon.reconstruct(recipe, bundle, noise_std=0.002, host=host, device="cpu")
    assert result.image.is_complex() and tuple(result.image.shape) == truth.shape
    adjoint = {"operator": recipe["operator"], "sampler": {"name": "adjoint"}}
    zero_filled = medrecon.reconstruct(adjoint, bundle, noise_std=0.002, host=host)
    assert result.info["operator"]["coil_maps"] == "espirit"
    assert np.isfinite(psnr(truth, result.image.numpy())) and psnr(truth, zero_filled.image.numpy()) > 10


#: operators whose A A^H is singular: pixels or k-space lines not measured, blocks averaged
SINGULAR_OPERATORS = {
    "inpainting-70": {"name": "inpainting", "missing": 0.7, "seed": 1},
    "downsample-2": {"name": "downsample", "factor": 2},
    "mri-zero-rows": {"name": "mri-multicoil", "coils": 2, "acceleration": 4},
}


@pytest.mark.parametrize("op", list(SINGULAR_OPERATORS))
@pytest.mark.parametrize("key", [*SAMPLERS, "pigdm-cg"])
def test_every_diffusion_sampler_stays_finite_where_a_ah_is_singular(native_prior, host, op, key):
    truth = np.random.default_rng(1).random((2, 32, 32), dtype=np.float32)
    m = medrecon.simulate(truth, SINGULAR_OPERATORS[op], noise_std=0.01, seed=0, host=host)
    r = recipe(native_prior, "pigdm" if key == "pigdm-cg" else key)
    r["sampler"]["steps"] = 5
    if key == "pigdm-cg":
        r["sampler"]["solver"] = "cg"
    result = medrecon.reconstruct(r, m, host=host, device="cpu")
    assert tuple(result.image.shape) == truth.shape and torch.isfinite(result.image).all()


@pytest.mark.parametrize(
    "sampler", [{"name": "mmps"}, {"name": "pigdm", "solver": "cg"}], ids=["mmps", "pigdm-cg"]
)
def test_the_reported_nan_on_inpainting_with_a_trained_prior_is_gone(host, sampler):
    """Issue 19's report as a third party met it: a trained prior (the shipped brain-axial, whose
    Jacobian is not symmetric positive) on a brain slice with 70% of the pixels missing. With the
    CG that divided by a clamped curvature, MMPS went NaN at its first step, at t = 999 for any
    step count: 3 steps catch it (checked against the old CG) at a sixth of the report's 20."""
    from medrecon.samples import brain_sample

    volume, affine = brain_sample("2.8mm")
    truth = np.ascontiguousarray(volume[7:8])
    op = SINGULAR_OPERATORS["inpainting-70"]
    m = medrecon.simulate(truth, op, noise_std=0.01, seed=0, affine=affine, host=host)
    recipe = {"prior": {"name": "diffusion", "weights": "brain-axial"}, "sampler": {**sampler, "steps": 3}}
    result = medrecon.reconstruct(recipe, m, host=host, device="cpu", seed=0)
    assert torch.isfinite(result.image).all()


STORED = {  # NIfTI orientations a scan may be stored in, as nibabel axis codes
    "LPS": [[0, -1], [1, -1], [2, 1]],
    "sagittal": [[2, 1], [0, 1], [1, -1]],
    "coronal": [[0, 1], [2, 1], [1, 1]],
}


@pytest.mark.parametrize("stored", list(STORED))
def test_the_prior_sees_axial_ras_slices_whatever_the_storage(native_prior, stored):
    """A volume stored sagittally (or LPS, coronal) reaches the 2D network as the same axial RAS
    slices as the RAS-stored volume: the prior's output is the RAS one, reoriented back."""
    import nibabel as nib

    from medrecon_priors import load_prior

    rng = np.random.default_rng(0)
    ras = rng.standard_normal((2, 16, 24, 20)).astype(np.float32)  # (K, S, A, R)
    nifti = nib.Nifti1Image(ras[0].transpose(2, 1, 0), np.eye(4))
    transform = nib.orientations.ornt_transform([[0, 1], [1, 1], [2, 1]], np.array(STORED[stored]))
    moved = nifti.as_reoriented(transform)

    def to_stored(v):  # the same reorientation applied to any (S, A, R) array
        image = nib.Nifti1Image(v.transpose(2, 1, 0), np.eye(4)).as_reoriented(transform)
        return np.asarray(image.dataobj).transpose(2, 1, 0)

    stored_volume = torch.from_numpy(np.stack([to_stored(v) for v in ras]))
    canonical = load_prior(native_prior)
    reference = canonical.predict_eps(torch.from_numpy(ras), 500).numpy()
    prior = load_prior(native_prior)
    assert "reoriented" in prior.orient(moved.affine)
    out = prior.predict_eps(stored_volume, 500).numpy()
    expected = np.stack([to_stored(v) for v in reference])
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert load_prior(native_prior).orient(np.eye(4)) is None  # RAS: nothing to do


def test_reconstruction_says_when_the_prior_saw_a_reoriented_volume(native_prior, host):
    truth = np.random.default_rng(1).random((8, 24, 16), dtype=np.float32)
    sagittal = np.array([[0, 0, 1.0, 0], [1.0, 0, 0, 0], [0, -1.0, 0, 0], [0, 0, 0, 1]])
    m = medrecon.simulate(
        truth, {"name": "mri-multicoil", "coils": 2}, noise_std=0.01, affine=sagittal, host=host
    )
    result = medrecon.reconstruct(recipe(native_prior, "dds"), m, host=host, device="cpu")
    assert "reoriented" in result.info["orientation"] and result.image.shape == truth.shape
    plain = medrecon.simulate(
        truth, {"name": "mri-multicoil", "coils": 2}, noise_std=0.01, affine=np.eye(4), host=host
    )
    assert "orientation" not in medrecon.reconstruct(recipe(native_prior, "dds"), plain, host=host).info
