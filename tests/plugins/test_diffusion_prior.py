"""Diffusion priors from networks: prior cards and weights, slice-wise application, intensity mapping."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import medrecon
from medrecon_priors import Diffusion, NetworkPrior, load_prior, save_prior
from medrecon_priors.gaussian import ddpm_alphas_cumprod
from medrecon_samplers import DDS, DPS, MMPS
from tests.helpers import TINY_UNET

ARCH = {"class": "DiffusionModelUNet", **TINY_UNET}
CARD = {
    "name": "tiny-test",
    "architecture": ARCH,
    "schedule": {"scheduler": "DDPMScheduler", "num_train_timesteps": 1000, "schedule": "linear_beta"},
    "prediction": "epsilon",
    "image_size": [16, 16],
    "intensity": {"data_range": [-1.0, 1.0], "normalisation": "test"},
    "training": {"data": "none: untrained test network"},
}


@pytest.fixture(scope="module")
def card_path(tmp_path_factory):
    from medrecon.prior_card import build_unet

    torch.manual_seed(0)
    return save_prior(tmp_path_factory.mktemp("prior") / "tiny", build_unet(ARCH), CARD)


def test_weights_round_trip_through_card_and_safetensors(card_path):
    prior = load_prior(card_path)
    again = Diffusion(weights=str(card_path.parent))  # by folder
    x = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(prior.predict_eps(x, 500), again.predict_eps(x, 500))
    assert prior.card["training"]["data"].startswith("none") and prior.data_range == (-1.0, 1.0)
    assert len(prior.alphas_cumprod) == 1000


def test_slice_batches_and_slice_axis_do_not_change_the_result(card_path):
    x = torch.randn(5, 16, 16, generator=torch.Generator().manual_seed(2))
    one, many = load_prior(card_path, slice_batch=1), load_prior(card_path, slice_batch=4)
    torch.testing.assert_close(one.predict_eps(x, 300), many.predict_eps(x, 300), rtol=1e-4, atol=1e-5)
    cube = torch.randn(2, 16, 16, 16, generator=torch.Generator().manual_seed(3))  # K=2 samples of a volume
    along_w = load_prior(card_path, slice_axis=2).predict_eps(cube, 300)
    expected = many.predict_eps(cube.movedim(-1, -3), 300).movedim(-3, -1)
    torch.testing.assert_close(along_w, expected, rtol=1e-4, atol=1e-5)


class _ExactStandardNormal(torch.nn.Module):
    """The exact network for x0 ~ N(0, I), in each parametrisation."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind, self.abar = kind, ddpm_alphas_cumprod()

    def forward(self, x, steps):
        a = self.abar[steps].reshape(-1, 1, 1, 1)
        eps, x0 = (1 - a).sqrt() * x, a.sqrt() * x
        return {"epsilon": eps, "sample": x0, "v_prediction": a.sqrt() * eps - (1 - a).sqrt() * x0}[self.kind]


@pytest.mark.parametrize("kind", ["sample", "v_prediction"])
def test_v_and_x0_predicting_networks_are_converted_to_eps(kind):
    x = torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(4))
    reference = NetworkPrior(_ExactStandardNormal("epsilon"), ddpm_alphas_cumprod())
    other = NetworkPrior(_ExactStandardNormal(kind), ddpm_alphas_cumprod(), prediction=kind)
    for t in (10, 500, 990):
        torch.testing.assert_close(other.predict_eps(x, t), reference.predict_eps(x, t), rtol=1e-4, atol=1e-5)


def test_bad_weights_get_clear_errors(tmp_path, card_path):
    with pytest.raises(medrecon.InputError, match="no prior weights at 'no-such-prior'.*shipped weights"):
        Diffusion(weights="no-such-prior")
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({**CARD, "weights": "missing.safetensors"}))
    with pytest.raises(medrecon.InputError, match="names weights 'missing.safetensors', which are missing"):
        load_prior(broken)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(
        json.dumps(
            {
                **CARD,
                "architecture": {**ARCH, "channels": [8, 8]},
                "weights": str(card_path.with_suffix(".safetensors")),
            }
        )
    )
    with pytest.raises(medrecon.InputError, match="do not fit the card's architecture"):
        load_prior(wrong)


def test_intensity_map_round_trips_a_problem():
    from medrecon.numerics.intensity import IntensityMap
    from tests.helpers import Scale

    op = Scale((4, 4), c=2.0)
    x = torch.rand(4, 4) * 300 + 100  # physical units, e.g. CT numbers
    problem = medrecon.Problem(op, op(x), 1.0)
    mapping = IntensityMap(scale=150.0, offset=250.0, source="test")
    model = mapping.to_model(problem)
    z = model.y / 2.0  # the exact model-space solution of A z = y'
    torch.testing.assert_close(mapping.to_physical(z), x)
    assert model.noise_std == pytest.approx(1.0 / 150.0)


def test_a_sampler_maps_into_the_prior_range_and_back(card_path, host, phantom):
    scaled = phantom * 1000.0 + 50.0  # far from [-1, 1]
    m = medrecon.simulate(
        scaled, {"name": "mri-multicoil", "acceleration": 2}, noise_std=1.0, seed=0, host=host
    )
    recipe = {
        "prior": {"name": "diffusion", "weights": str(card_path)},
        "sampler": {"name": "dds", "steps": 5},
    }
    result = medrecon.reconstruct(recipe, m, host=host, device="cpu")
    intensity = result.info["intensity"]
    assert 300 < intensity["scale"] < 700 and intensity["from"].startswith("CG")
    assert result.image.shape == phantom.shape and torch.isfinite(result.image).all()
    # an untrained network, but data consistency keeps the result in physical units
    assert 0.2 < float(result.image.mean()) / float(scaled.mean()) < 5


def test_a_torch_module_with_eps_signature_can_be_any_prior(phantom):
    prior = NetworkPrior(_ExactStandardNormal("epsilon"), ddpm_alphas_cumprod(), data_range=None)
    op = medrecon.build_operator(
        medrecon.ComponentRecipe("blind-deconv", {"shape": list(phantom.shape)}), host=_host()
    )
    problem = medrecon.Problem(op, op.simulate(torch.from_numpy(phantom), 0.01), 0.01)
    out = DDS(steps=10).run(problem, prior).image
    assert out.shape == phantom.shape and torch.isfinite(out).all()


def _host():
    from tests.helpers import builtin_host

    return builtin_host()


def test_untrained_prior_card_values_survive_json(card_path):
    card = json.loads(card_path.read_text())
    assert card["weights"] == card_path.with_suffix(".safetensors").name
    assert np.allclose(card["intensity"]["data_range"], [-1, 1])


@pytest.mark.parametrize(
    "make", [lambda c: DPS(steps=3, grad_chunk=c), lambda c: MMPS(steps=3, grad_chunk=c)]
)
def test_chunked_network_gradients_equal_the_whole_volume_ones(card_path, host, make):
    """Guidance gradients computed over 2-slice chunks give the same samples as one big graph."""
    truth = np.random.default_rng(0).random((6, 16, 16)).astype(np.float32)
    m = medrecon.simulate(truth, {"name": "ct-parallel", "views": 12}, noise_std=0.05, seed=0, host=host)
    op = medrecon.build_operator(m.operator, arrays=m.arrays, host=host)
    problem = medrecon.Problem(op, torch.from_numpy(m.y), 0.05)
    prior = load_prior(card_path)
    whole = make(0).run(problem, prior, seed=0).image
    chunked = make(2).run(problem, prior, seed=0).image
    torch.testing.assert_close(chunked, whole, rtol=1e-4, atol=1e-5)
