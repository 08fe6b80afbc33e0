"""The core call in its two forms: reconstruct() and the generator reconstruct_steps()."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import medrecon


def test_the_generator_form_yields_each_step_and_returns_the_same_result(mri_measurement, host):
    recipe = {"sampler": {"name": "cg", "iterations": 7, "tol": 0.0}}
    gen = medrecon.reconstruct_steps(recipe, mri_measurement, host=host, device="cpu")
    steps = []
    while True:
        try:
            steps.append(next(gen))
        except StopIteration as stop:
            result = stop.value
            break
    assert [s.index for s in steps] == list(range(7)) and all(s.estimate is not None for s in steps)
    direct = medrecon.reconstruct(recipe, mri_measurement, host=host, device="cpu")
    torch.testing.assert_close(result.image, direct.image)
    assert result.info["recipe"] == direct.info["recipe"]
    assert torch.is_grad_enabled()  # grad mode did not leak out of the generator


def test_closing_the_generator_stops_the_work(mri_measurement, host):
    gen = medrecon.reconstruct_steps(
        {"sampler": {"name": "cg", "iterations": 50}}, mri_measurement, host=host
    )
    next(gen)
    gen.close()
    with pytest.raises(StopIteration):
        next(gen)


def test_validation_errors_come_on_the_first_step(mri_measurement, host):
    gen = medrecon.reconstruct_steps({"sampler": {"name": "nope"}}, mri_measurement, host=host)
    with pytest.raises(medrecon.RecipeError, match="no sampler named 'nope'"):
        next(gen)


def test_run_steps_simulates_a_volume_or_runs_a_measurement_on_its_own_operator(
    phantom, mri_measurement, host
):
    from medrecon.contracts import drive

    recipe = {
        "operator": {"name": "mri-multicoil", "acceleration": 2},
        "sampler": {"name": "cg", "iterations": 4},
    }
    from_volume = drive(medrecon.run_steps(recipe, phantom, noise_std=0.0, seed=1, device="cpu", host=host))
    assert from_volume.info["operator"]["acceleration_realised"] < 2.5  # the recipe's operator made it
    # a loaded measurement keeps its own operator: the form's [operator] only says how to simulate
    from_bundle = drive(medrecon.run_steps(recipe, mri_measurement, device="cpu", host=host))
    assert from_bundle.info["operator"]["acceleration_realised"] > 3.5
    with pytest.raises(medrecon.RecipeError, match="simulating a volume needs the recipe's \\[operator\\]"):
        next(medrecon.run_steps({"sampler": {"name": "cg"}}, phantom, host=host))


def test_first_look_is_the_operators_direct_image_on_the_reconstruction_grid(phantom, mri_measurement, host):
    image, what = medrecon.first_look(mri_measurement, host=host)
    assert what == "adjoint" and image.shape == phantom.shape and image.dtype == np.float32
    ct = medrecon.simulate(phantom, {"name": "ct-parallel", "views": 60}, noise_std=0.0, host=host)
    image, what = medrecon.first_look(ct, host=host)
    assert what == "fbp" and image.shape == phantom.shape
    assert np.corrcoef(image.ravel(), phantom.ravel())[0, 1] > 0.9  # FBP of 60 views looks like it
