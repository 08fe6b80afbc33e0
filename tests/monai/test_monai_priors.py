"""Priors from MONAI: network and scheduler objects, and bundle folders (configs + models/model.pt)."""

from __future__ import annotations

import json

import pytest
import torch
from monai.networks.nets import DiffusionModelUNet
from monai.networks.schedulers import DDPMScheduler

import medrecon
from medrecon_priors import Diffusion, NetworkPrior
from tests.helpers import TINY_UNET

NET = TINY_UNET


def make_bundle(root, prediction="epsilon"):
    """A tiny bundle in the layout of the model zoo's generative bundles."""
    (root / "configs").mkdir(parents=True)
    (root / "models").mkdir()
    config = {
        "network_def": {"_target_": "monai.networks.nets.DiffusionModelUNet", **NET},
        "noise_scheduler": {
            "_target_": "monai.networks.schedulers.DDPMScheduler",
            "num_train_timesteps": 1000,
            "schedule": "scaled_linear_beta",
            "prediction_type": prediction,
        },
    }
    (root / "configs" / "inference.json").write_text(json.dumps(config))
    torch.manual_seed(0)
    network = DiffusionModelUNet(**NET)
    torch.save(network.state_dict(), root / "models" / "model.pt")
    return network


def test_network_and_scheduler_objects_become_a_prior():
    network = DiffusionModelUNet(**NET)
    scheduler = DDPMScheduler(
        num_train_timesteps=1000, schedule="scaled_linear_beta", prediction_type="v_prediction"
    )
    prior = NetworkPrior.from_monai(network, scheduler)
    torch.testing.assert_close(prior.alphas_cumprod, scheduler.alphas_cumprod.float())
    assert prior.prediction == "v_prediction"
    assert prior.predict_eps(torch.randn(2, 16, 16), 100).shape == (2, 16, 16)


def test_a_bundle_folder_loads_as_a_prior(tmp_path):
    network = make_bundle(tmp_path / "tiny_ddpm", prediction="v_prediction")
    prior = Diffusion(weights=str(tmp_path / "tiny_ddpm"))
    assert prior.prediction == "v_prediction" and prior.card["source"] == "MONAI bundle"
    x = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(1))
    expected = NetworkPrior.from_monai(
        network.eval(), DDPMScheduler(1000, schedule="scaled_linear_beta", prediction_type="v_prediction")
    )
    torch.testing.assert_close(prior.predict_eps(x, 400), expected.predict_eps(x, 400))


def test_a_bundle_runs_in_a_reconstruction(tmp_path, host, phantom):
    make_bundle(tmp_path / "b")
    m = medrecon.simulate(phantom, {"name": "mri-multicoil", "acceleration": 2}, noise_std=0.01, host=host)
    recipe = {
        "prior": {"name": "diffusion", "weights": str(tmp_path / "b")},
        "sampler": {"name": "dds", "steps": 3},
    }
    out = medrecon.reconstruct(recipe, m, host=host, device="cpu").image
    assert out.shape == phantom.shape and torch.isfinite(out).all()


def test_a_bundle_whose_weights_do_not_fit_its_network(tmp_path):
    make_bundle(tmp_path / "b")
    torch.save(
        DiffusionModelUNet(**{**NET, "channels": [8, 8]}).state_dict(), tmp_path / "b" / "models" / "model.pt"
    )
    with pytest.raises(medrecon.InputError, match="models/model.pt does not fit network_def"):
        Diffusion(weights=str(tmp_path / "b"))
