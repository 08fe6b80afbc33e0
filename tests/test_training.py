"""`medrecon train-prior`: checkpoints that load as priors, exact resume, clear errors."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import medrecon
from medrecon.training import train_prior
from tests.helpers import TINY_UNET

ARCH = {"class": "DiffusionModelUNet", **TINY_UNET}


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    from medrecon.demo import sample_volume

    path = tmp_path_factory.mktemp("train") / "v.nii.gz"
    nib.save(nib.Nifti1Image(sample_volume((24, 32, 32)).transpose(2, 1, 0), np.eye(4)), str(path))
    return path


def train(volume, out, steps, resume=False):
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


def test_bad_training_requests(volume, tmp_path):
    with pytest.raises(medrecon.InputError, match="nothing to resume"):
        train(volume, tmp_path / "none", steps=5, resume=True)
    train(volume, tmp_path / "done", steps=5)
    with pytest.raises(medrecon.InputError, match="already at step 5"):
        train(volume, tmp_path / "done", steps=5, resume=True)
    from medrecon.cli import main

    result = CliRunner().invoke(
        main, ["train-prior", str(volume), "-o", str(tmp_path / "x"), "--holdout", "9:3"]
    )
    assert result.exit_code == 2 and "--holdout must be START:STOP" in result.output
