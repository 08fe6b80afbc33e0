"""`medrecon train-prior`: checkpoints that load as priors, exact resume, clear errors."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import medrecon
from medrecon.apps.training import train_prior
from tests.helpers import TINY_UNET

ARCH = {"class": "DiffusionModelUNet", **TINY_UNET}


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    from medrecon.samples import phantom_volume

    path = tmp_path_factory.mktemp("train") / "v.nii.gz"
    nib.save(nib.Nifti1Image(phantom_volume((24, 32, 32)).transpose(2, 1, 0), np.eye(4)), str(path))
    return path


def train(volume, out, steps, resume=False, **options):
    return train_prior(
        [volume],
        out,
        steps=steps,
        image_size=16,
        holdout=(10, 14),
        batch_size=4,
        checkpoint_every=5,
        architecture=ARCH,
        device="cpu",
        resume=resume,
        **options,
    )


def test_a_trained_prior_has_a_card_and_reconstructs(volume, tmp_path, host, phantom):
    report = train(volume, tmp_path / "prior", steps=10)
    card = json.loads(report.card.read_text())
    assert card["training"]["steps"] == 10 and card["training"]["data"]["holdout"] == [10, 14]
    assert card["training"]["data"]["validation_slices"] == 4 and len(card["training"]["history"]) == 2
    assert np.isfinite(report.train_loss) and report.validation_loss is not None
    m = medrecon.simulate(
        phantom[:, :16, :16].copy(), {"name": "mri-multicoil", "acceleration": 2}, noise_std=0.01, host=host
    )
    recipe = {
        "prior": {"name": "diffusion", "weights": str(report.card)},
        "sampler": {"name": "dds", "steps": 3},
    }
    assert torch.isfinite(medrecon.reconstruct(recipe, m, host=host, device="cpu").image).all()


def test_resume_continues_exactly_where_training_stopped(volume, tmp_path):
    from safetensors.torch import load_file

    train(volume, tmp_path / "straight", steps=10)
    train(volume, tmp_path / "resumed", steps=5)
    train(volume, tmp_path / "resumed", steps=10, resume=True)
    a = load_file(str(tmp_path / "straight.safetensors"))
    b = load_file(str(tmp_path / "resumed.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_resumed_run_takes_its_own_rate_and_decays_it_to_the_last_step(volume, tmp_path):
    train(volume, tmp_path / "p", steps=5, lr=1e-3)
    report = train(volume, tmp_path / "p", steps=15, resume=True, lr=1e-4, lr_decay="cosine")
    rates = [entry["lr"] for entry in report.history]
    assert rates[0] == pytest.approx(1e-3)  # the first run, constant
    assert rates[1] < 1e-4 and rates[2] == pytest.approx(1e-6)  # resumed at 1e-4, at 1% by step 15
    with pytest.raises(medrecon.InputError, match="--lr-decay must be one of constant, cosine"):
        train(volume, tmp_path / "q", steps=5, lr_decay="linear")


def test_an_interrupted_decay_resumes_along_the_same_cosine(volume, tmp_path):
    """A cosine run stopped at a checkpoint and resumed ends with the weights and rates of one that
    ran straight through (the shipped conditional models finish this way)."""
    from safetensors.torch import load_file

    class Interrupted(Exception):
        pass

    def stop_at_step_8(step, total, loss):
        if step == 8:  # after the checkpoint at step 5, as a killed run
            raise Interrupted

    straight = train(volume, tmp_path / "straight", steps=15, lr_decay="cosine")
    with pytest.raises(Interrupted):
        train(volume, tmp_path / "resumed", steps=15, lr_decay="cosine", progress=stop_at_step_8)
    resumed = train(volume, tmp_path / "resumed", steps=15, resume=True, lr_decay="cosine")
    assert [e["lr"] for e in resumed.history] == [e["lr"] for e in straight.history]
    a = load_file(str(tmp_path / "straight.safetensors"))
    b = load_file(str(tmp_path / "resumed.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_training_requests(volume, tmp_path):
    with pytest.raises(medrecon.InputError, match="nothing to resume"):
        train(volume, tmp_path / "none", steps=5, resume=True)
    train(volume, tmp_path / "done", steps=5)
    with pytest.raises(medrecon.InputError, match="already at step 5"):
        train(volume, tmp_path / "done", steps=5, resume=True)
    from medrecon.apps.cli import main

    result = CliRunner().invoke(
        main, ["train-prior", str(volume), "-o", str(tmp_path / "x"), "--holdout", "9:3"]
    )
    assert result.exit_code == 2 and "--holdout must be START:STOP" in result.output
    result = CliRunner().invoke(
        main, ["train-prior", str(volume), "-o", str(tmp_path / "k"), "--dataset", "blur-kernels"]
    )
    assert result.exit_code == 2 and "give no VOLUMES" in result.output
    result = CliRunner().invoke(main, ["train-prior", "-o", str(tmp_path / "k"), "--dataset", "blur-kernel"])
    assert result.exit_code == 2 and "no dataset named 'blur-kernel'" in result.output
    result = CliRunner().invoke(
        main,
        ["train-prior", "-o", str(tmp_path / "k"), "--dataset", "blur-kernels", "--dataset-option", "size=5"],
    )
    assert result.exit_code == 2 and "size" in result.output and "kernel_size" in result.output


def test_slices_keep_their_aspect_and_the_guard_is_unused(tmp_path):
    """A 40 x 20 (i x j) box of anatomy: cropped to it, padded to 40 x 40, resized; held-out and
    guard slices never reach training."""
    from medrecon.apps.training import load_slices, square_slices

    data = np.zeros((60, 50, 30), dtype=np.float32)  # NIfTI (i, j, k)
    data[10:50, 20:40, 2:28] = 1.0
    data[10:50, 20:40, 2:28] += np.linspace(0, 1, 40)[:, None, None]  # varies along i only
    path = tmp_path / "box.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    slices, geometry = square_slices(torch.as_tensor(data * 2 - 1), 2, 20)
    assert geometry["box"] == [20, 40, 10, 50] and geometry["square_side"] == 40
    middle = slices[15, 0]  # rows are j (padded 10 above and below), columns are i
    assert bool((middle[:5] == -1).all()) and bool((middle[15:] == -1).all())
    assert float(middle[10, -1]) > float(middle[10, 0])  # brighter with i, along the columns
    train, validation, info = load_slices([path], 2, 20, (10, 14), guard=3)
    assert len(validation) == 4 and info["validation_slices"] == 4
    assert len(train) == 26 - 4 - 2 * 3 and info["holdout_guard"] == 3


def test_the_held_out_slab_is_written_where_it_lies(volume, tmp_path):
    from medrecon.apps.training import holdout_volume
    from medrecon.io import load_nifti

    train(volume, tmp_path / "prior", steps=1)
    written = load_nifti(tmp_path / "prior.holdout.nii.gz")
    slab, affine = holdout_volume(volume, 2, 16, (10, 14))
    assert written.data.shape == (4, 16, 16) and np.allclose(written.data, slab, atol=1e-6)
    assert np.allclose(written.affine, affine) and slab.min() >= 0 and slab.max() <= 1
    # the first held-out slice sits at slice 10 of the input; about 32 input pixels became 16
    assert affine[2, 3] == pytest.approx(10) and 1.5 < affine[0, 0] == affine[1, 1] <= 2.0


def test_kernel_prior_from_the_command_line(tmp_path):
    """The deconvolution plugin's `blur-kernels` dataset, reached through the host."""
    from medrecon.apps.cli import main

    out = tmp_path / "kernels"
    result = CliRunner().invoke(
        main,
        [
            "train-prior",
            "--dataset",
            "blur-kernels",
            "--count",
            "12",
            "--dataset-option",
            "kernel_size=5",
            "--steps",
            "2",
            "--batch-size",
            "2",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["training"]["data"]["kind"] == "kernel" and card["image_size"] == [8, 8]
