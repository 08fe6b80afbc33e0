"""Blind deblurring: the kernel prior, BlindDPS and the classical blind TV baseline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import medrecon
from medrecon.apps.training import train_dataset_prior, train_prior
from medrecon.metrics import psnr
from medrecon_deconv.training import kernel_images
from tests.helpers import TINY_UNET

ARCH = {"class": "DiffusionModelUNet", **TINY_UNET}


@pytest.fixture(scope="module")
def kernel_prior(tmp_path_factory):
    """A tiny kernel prior (7 x 7 kernels in 8 x 8 frames), trained for a few steps."""
    out = tmp_path_factory.mktemp("kprior") / "kernels"
    report = train_dataset_prior(
        out,
        "blur-kernels",
        count=40,
        dataset_options={"kernel_size": 7, "image_size": 8},
        steps=4,
        batch_size=4,
        checkpoint_every=4,
        architecture=ARCH,
    )
    return report.card


@pytest.fixture(scope="module")
def blurred(tmp_path_factory):
    from medrecon.samples import phantom_volume
    from tests.helpers import builtin_host

    truth = phantom_volume((2, 16, 16))
    op = {"name": "blind-deconv", "kernel_type": "motion", "kernel_size": 5, "seed": 1}
    return truth, medrecon.simulate(truth, op, noise_std=0.01, seed=0, host=builtin_host())


def test_kernel_prior_card_says_what_it_models(kernel_prior):
    card = json.loads(kernel_prior.read_text())
    data = card["training"]["data"]
    assert data["kind"] == "kernel" and data["kernel_size"] == 7
    assert data["dataset"] == "blur-kernels"
    assert data["train_images"] == 36 and data["validation_images"] == 4
    assert card["image_size"] == [8, 8] and "kernel / max" in card["intensity"]["normalisation"]
    assert card["training"]["history"][-1]["validation_loss"] is not None


def test_kernel_frame_gives_back_the_kernels_it_was_trained_on(kernel_prior):
    from medrecon_deconv.kernels import random_kernels
    from medrecon_priors.network import load_prior
    from medrecon_samplers.blind import KernelFrame

    prior = load_prior(str(kernel_prior))
    kernels = torch.from_numpy(random_kernels(6, 7, seed=2))
    images = kernel_images(kernels, 8)
    assert images.shape == (6, 1, 8, 8) and images.min() == -1 and images.max() == 1
    back = KernelFrame(prior, (7, 7)).kernel(images[:, 0])
    torch.testing.assert_close(back, kernels, atol=2e-4, rtol=1e-2)  # up to the 1e-3 centre floor
    centre = KernelFrame(prior, (3, 3)).kernel(images[:, 0])  # a smaller kernel: the central 3 x 3
    expected = kernels[:, 2:5, 2:5] / kernels[:, 2:5, 2:5].sum(dim=(-2, -1), keepdim=True)
    torch.testing.assert_close(centre, expected, atol=2e-4, rtol=1e-2)
    empty = KernelFrame(prior, (3, 3)).kernel(-torch.ones(8, 8))  # nothing above background: a delta
    assert float(empty[1, 1]) == 1.0 and float(empty.sum()) == 1.0
    with pytest.raises(medrecon.InputError, match="up to 7x7"):
        KernelFrame(prior, (9, 9))


def blind_dps(kernel_prior, **params):
    recipe = {"name": "blind-dps", "steps": 4, "kernel_prior": str(kernel_prior), **params}
    return {
        "prior": {"name": "gaussian", "kind": "diagonal", "mean": 0.3, "variance": 0.1},
        "sampler": recipe,
    }


def test_blind_dps_returns_an_image_and_a_valid_kernel(kernel_prior, blurred, host):
    truth, m = blurred
    result = medrecon.reconstruct(blind_dps(kernel_prior), m, seed=1, host=host)
    kernel = result.extras["kernel"]
    assert result.image.shape == truth.shape and torch.isfinite(result.image).all()
    assert kernel.shape == (5, 5) and float(kernel.min()) >= 0
    assert float(kernel.sum()) == pytest.approx(1.0, abs=1e-5)
    assert result.info["nfe"] == 8 and result.info["kernel_prior"] == str(kernel_prior)
    again = medrecon.reconstruct(blind_dps(kernel_prior), m, seed=1, host=host)
    other = medrecon.reconstruct(blind_dps(kernel_prior), m, seed=2, host=host)
    assert torch.equal(result.image, again.image) and torch.equal(kernel, again.extras["kernel"])
    assert not torch.equal(result.image, other.image)


def test_blind_dps_offers_the_reference_code_s_form(kernel_prior, blurred, host):
    truth, m = blurred
    result = medrecon.reconstruct(blind_dps(kernel_prior, form="reference"), m, seed=1, host=host)
    kernel = result.extras["kernel"]
    assert result.info["form"] == "reference" and torch.isfinite(result.image).all()
    assert float(kernel.min()) >= 0 and float(kernel.sum()) == pytest.approx(1.0, abs=1e-5)
    plain = medrecon.reconstruct(blind_dps(kernel_prior), m, seed=1, host=host)
    assert plain.info["form"] == "medrecon" and not torch.equal(result.image, plain.image)
    # its L1 term acts on the normalised kernel, which sums to one: no effect at all, as there
    no_l1 = medrecon.reconstruct(blind_dps(kernel_prior, form="reference", l1=0.0), m, seed=1, host=host)
    torch.testing.assert_close(no_l1.image, result.image, atol=1e-5, rtol=1e-4)
    with pytest.raises(medrecon.InputError, match=r"'form' of sampler 'blind-dps' expects 'medrecon' \|"):
        medrecon.reconstruct(blind_dps(kernel_prior, form="paper"), m, host=host)


def test_straight_through_lets_the_data_put_weight_where_the_kernel_estimate_is_background(
    kernel_prior, blurred, host
):
    """BlindDPS's kernel step differentiates through the kernel's clips: with plain clips, a pixel
    whose estimate is below the background (-1) gets no gradient, so no data term can switch it on."""
    from medrecon_priors.network import load_prior
    from medrecon_samplers.blind import KernelFrame, clip

    frame = KernelFrame(load_prior(str(kernel_prior)), (5, 5))
    wanted = torch.zeros(5, 5)
    wanted[2, :] = 0.2  # a horizontal streak through the centre
    off = [0, 1, 4]  # its pixels that the estimate below leaves at the background
    image = torch.full((8, 8), -1.2)
    image[3, 3:5] = 0.6  # kernel pixels (2, 2) and (2, 3) on, every other one below the background
    # the medrecon form's path (weights clipped at zero), then the reference's (k0_hat clipped to
    # [-1, 1] first); values the same either way
    for reference in (False, True):
        gradients = {}
        for straight in (False, True):
            leaf = image.clone().requires_grad_(True)
            k0 = clip(leaf, -1.0, 1.0, straight) if reference else leaf
            kernel = frame.kernel(k0, straight)
            torch.testing.assert_close(kernel, frame.kernel(image))
            ((kernel - wanted) ** 2).sum().backward()
            gradients[straight] = leaf.grad[3, 1:6]  # the streak's row, kernel columns 0-4
        assert (gradients[False][off] == 0).all()
        assert (gradients[True][off] < 0).all()  # a descent step raises the streak's missing pixels

    _, m = blurred
    straight = blind_dps(kernel_prior, form="reference", straight_through=True)
    result = medrecon.reconstruct(straight, m, seed=1, host=host)
    plain = medrecon.reconstruct(blind_dps(kernel_prior, form="reference"), m, seed=1, host=host)
    assert result.info["straight_through"] and not plain.info["straight_through"]
    assert not torch.equal(result.extras["kernel"], plain.extras["kernel"])
    # the reference's L1 on the normalised kernel stays without effect
    straight["sampler"]["l1"] = 0.0
    no_l1 = medrecon.reconstruct(straight, m, seed=1, host=host)
    torch.testing.assert_close(no_l1.image, result.image, atol=1e-5, rtol=1e-4)


def test_blind_dps_draws_samples_with_a_kernel_each(kernel_prior, blurred, host):
    _, m = blurred
    result = medrecon.reconstruct(blind_dps(kernel_prior, samples=3), m, seed=0, host=host)
    assert result.samples.shape == (3, *m.y.shape) and result.std.shape == m.y.shape
    assert result.extras["kernel_std"].shape == (5, 5) and float(result.extras["kernel_std"].max()) > 0


def test_blind_dps_refuses_what_it_cannot_use(kernel_prior, blurred, host, tmp_path, phantom):
    _, m = blurred
    image_prior = train_prior(
        [_nifti(phantom, tmp_path)],
        tmp_path / "image",
        image_size=8,
        steps=1,
        batch_size=2,
        architecture=ARCH,
    ).card
    with pytest.raises(medrecon.InputError, match="are an image prior, not a blur-kernel prior"):
        medrecon.reconstruct(blind_dps(image_prior), m, host=host)
    mri = medrecon.simulate(
        phantom[:2], {"name": "mri-multicoil", "acceleration": 2}, noise_std=0.0, host=host
    )
    with pytest.raises(medrecon.IncompatibleError, match="blind operator"):
        medrecon.reconstruct(blind_dps(kernel_prior), mri, host=host)


def _nifti(volume, tmp_path):
    import nibabel as nib

    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(volume.transpose(2, 1, 0), np.eye(4)), str(path))
    return path


def test_blind_tv_sharpens_and_estimates_the_kernel(host):
    from medrecon.samples import phantom_volume

    truth = phantom_volume((4, 64, 64))
    op = {"name": "blind-deconv", "kernel_type": "motion", "kernel_size": 9, "intensity": 0.5}
    m = medrecon.simulate(truth, op, noise_std=0.01, seed=0, host=host)
    recipe = {"prior": {"name": "tv", "weight": 0.002}, "sampler": {"name": "blind-tv", "initial_sigma": 2.0}}
    result = medrecon.reconstruct(recipe, m, host=host)
    true_kernel = m.arrays["kernel"]
    r = np.arange(9) - 4
    start = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / 8.0)
    start /= start.sum()

    def kernel_error(k):
        return np.linalg.norm(k - true_kernel) / np.linalg.norm(true_kernel)

    estimate = result.extras["kernel"].numpy()
    assert kernel_error(estimate) < 0.85 * kernel_error(start)
    assert psnr(truth, result.image.numpy()) > psnr(truth, m.y) + 1.0


def blind_dds(prior=None, **params):
    return {
        "prior": prior or {"name": "diffusion", "weights": "brain-1mm"},
        "sampler": {"name": "blind-dds", "steps": 20, **params},
    }


@pytest.fixture(scope="module")
def motion_blurred():
    """The demo's blur at small scale: its 9 x 9 motion kernel on an odd-sized 81 x 79 crop of a
    slice of the shipped brain sample, at brain-1mm's 1 mm."""
    from medrecon.samples import brain_sample
    from tests.helpers import builtin_host

    volume, affine = brain_sample("1mm")
    truth = np.ascontiguousarray(volume[8:9, 60:141, 50:129])
    op = {"name": "blind-deconv", "kernel_type": "motion", "kernel_size": 9, "intensity": 0.5, "seed": 3}
    return truth, medrecon.simulate(truth, op, noise_std=0.01, seed=0, affine=affine, host=builtin_host())


def test_blind_dds_moves_its_kernel_towards_the_true_one_and_sharpens(motion_blurred, host):
    from medrecon.metrics import relative_error, ssim
    from medrecon_samplers.blind import gaussian_start

    truth, m = motion_blurred
    true_kernel = m.arrays["kernel"]
    start = gaussian_start((9, 9), 3.0, "cpu").numpy()  # the default start, wider than the blur
    result = medrecon.reconstruct(blind_dds(), m, seed=1, host=host)
    kernel = result.extras["kernel"].numpy()
    assert kernel.shape == (9, 9) and kernel.min() >= 0 and abs(kernel.sum() - 1) < 1e-5
    assert relative_error(true_kernel, kernel) < 0.9 * relative_error(true_kernel, start)  # 0.47 vs 0.58
    assert psnr(truth, result.image.numpy()) > psnr(truth, m.y) + 2.0
    assert result.info["nfe"] == 20 and result.info["initial_sigma"] == 3.0
    # the M-step is what moves the kernel: without kernel steps, or with them starting after the
    # last step, the kernel stays its Gaussian start
    for params in ({"kernel_iterations": 0}, {"kernel_start": 1.0}):
        held = medrecon.reconstruct(blind_dds(**params), m, seed=1, host=host)
        np.testing.assert_allclose(held.extras["kernel"].numpy(), start, atol=1e-7)
    # the default image is the network's last estimate: closer to the truth in structure than the
    # last data-consistency step's output, which fits part of the noise (SSIM 0.727 vs 0.698); the
    # kernel is fitted to the refined image either way
    refined = medrecon.reconstruct(blind_dds(result="refined"), m, seed=1, host=host)
    assert result.info["result"] == "denoised" and refined.info["result"] == "refined"
    assert torch.equal(refined.extras["kernel"], result.extras["kernel"])
    assert ssim(truth, result.image.numpy()) > ssim(truth, refined.image.numpy()) + 0.01
    again = medrecon.reconstruct(blind_dds(), m, seed=1, host=host)
    assert torch.equal(again.image, result.image)
    other = medrecon.reconstruct(blind_dds(), m, seed=2, host=host)
    assert not torch.equal(other.image, result.image)


GAUSSIAN = {"name": "gaussian", "kind": "diagonal", "mean": 0.3, "variance": 0.1}


def test_blind_dds_keeps_a_kernel_per_chain_on_volumes_and_slices(blurred, host):
    """Three chains on a two-slice volume (chains and slices must not be confused) and on one 2D
    slice: each chain ends with a valid kernel of its own."""
    _, m = blurred
    volume = medrecon.reconstruct(blind_dds(GAUSSIAN, steps=6, samples=3), m, seed=0, host=host)
    assert volume.samples.shape == (3, *m.y.shape) and volume.info["nfe"] == 18
    kernel, spread = volume.extras["kernel"], volume.extras["kernel_std"]
    assert kernel.shape == spread.shape == (5, 5) and float(spread.max()) > 0
    assert float(kernel.min()) >= 0 and abs(float(kernel.sum()) - 1) < 1e-5
    op = {"name": "blind-deconv", "kernel_type": "motion", "kernel_size": 5, "seed": 1}
    plane = medrecon.simulate(m.ground_truth[0], op, noise_std=0.01, seed=0, host=host)
    flat = medrecon.reconstruct(blind_dds(GAUSSIAN, steps=6, samples=3), plane, seed=0, host=host)
    assert flat.samples.shape == (3, 16, 16) and flat.extras["kernel"].shape == (5, 5)
    assert abs(float(flat.extras["kernel"].sum()) - 1) < 1e-5


def test_blind_dds_refuses_what_it_cannot_use(blurred, host, phantom):
    _, m = blurred
    with pytest.raises(medrecon.InputError, match=r"kernel_start.*a fraction of the steps in \[0, 1\]"):
        medrecon.reconstruct(blind_dds(GAUSSIAN, kernel_start=1.5), m, host=host)
    with pytest.raises(medrecon.InputError, match="initial_sigma"):
        medrecon.reconstruct(blind_dds(GAUSSIAN, initial_sigma=0.0), m, host=host)
    with pytest.raises(
        medrecon.InputError, match=r"'result' of sampler 'blind-dds' expects 'refined' \| 'denoised'"
    ):
        medrecon.reconstruct(blind_dds(GAUSSIAN, result="mean"), m, host=host)
    mri = medrecon.simulate(
        phantom[:2], {"name": "mri-multicoil", "acceleration": 2}, noise_std=0.0, host=host
    )
    with pytest.raises(medrecon.IncompatibleError, match="blind operator"):
        medrecon.reconstruct(blind_dds(GAUSSIAN), mri, host=host)
