"""Conditional models (BCDM, Diff-Unfolding): training, resume, inference at odd sizes, operator swap,
and the bad inputs (issue 13)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

import medrecon
from medrecon.apps.conditional_training import train_conditional

TINY = {
    "class": "UnrolledPosterior",
    "blocks": 2,
    "cg_iterations": 3,
    "unet": {
        "class": "DiffusionModelUNet",
        "spatial_dims": 2,
        "in_channels": 3,
        "out_channels": 1,
        "channels": [8, 16],
        "attention_levels": [False, False],
        "mid_block_attention": False,
        "num_res_blocks": 1,
        "norm_num_groups": 8,
        "num_head_channels": 8,
    },
}


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    from medrecon.samples import phantom_volume

    path = tmp_path_factory.mktemp("conditional") / "v.nii.gz"
    nib.save(nib.Nifti1Image(phantom_volume((24, 40, 40)).transpose(2, 1, 0), np.eye(4)), str(path))
    return path


def train(volume, out, steps, method="diff-unfolding", resume=False, **options):
    return train_conditional(
        [volume],
        out,
        method=method,
        holdout=(2, 5),
        validation=(18, 21),
        guard=1,
        patch_sizes=(16, 24),
        size_weights=(0.5, 0.5),
        batch_size=2,
        steps=steps,
        checkpoint_every=2,
        architecture=TINY,
        device="cpu",
        resume=resume,
        **options,
    )


@pytest.fixture(scope="module")
def model(volume, tmp_path_factory):
    """A tiny Diff-Unfolding model trained for a few steps on MRI, CT and blur (the shipped
    model's tasks: restoration is left out, as an operator it never saw)."""
    out = tmp_path_factory.mktemp("model") / "tiny"
    train(volume, out, 4, tasks=["blur", "ct-limited", "ct-sparse", "mri"])
    return out.with_suffix(".json")


def phantom_problem(shape, operator):
    from medrecon.samples import phantom_volume

    return medrecon.simulate(phantom_volume(shape), operator, noise_std=0.01, seed=1)


def test_training_writes_a_card_that_says_what_the_model_is(model):
    card = json.loads(model.read_text())
    assert card["kind"] == "conditional" and card["method"] == "diff-unfolding"
    assert card["operator_names"] == ["blind-deconv", "ct-parallel", "mri-multicoil"]
    assert card["operator_classes"] == ["Convolution", "MultiCoilMRI", "ParallelBeamCT"]
    [mri] = [ranges for ranges in card["operators"] if ranges["operator"] == "mri-multicoil"]
    assert mri["acceleration"] == [4.0, 8.0] and card["training"]["tasks"] == sorted(
        card["training"]["tasks"]
    )
    assert card["pixel_spacing_mm"] == [1.0, 1.0] and card["min_size"] == 2
    assert card["training"]["data"]["holdout"] == [2, 5]
    history = card["training"]["history"]
    assert [h["step"] for h in history] == [2, 4] and all(np.isfinite(h["validation_loss"]) for h in history)


def test_resume_continues_exactly_where_training_stopped(volume, tmp_path):
    from safetensors.torch import load_file

    train(volume, tmp_path / "whole", 4, method="bcdm", tasks=["mri"])
    train(volume, tmp_path / "parts", 2, method="bcdm", tasks=["mri"])
    train(volume, tmp_path / "parts", 4, method="bcdm", tasks=["mri"], resume=True)
    whole = load_file(str(tmp_path / "whole.safetensors"))
    parts = load_file(str(tmp_path / "parts.safetensors"))
    assert all(torch.equal(whole[k], parts[k]) for k in whole)
    card = json.loads((tmp_path / "parts.json").read_text())
    assert card["method"] == "bcdm" and card["operator_names"] == ["mri-multicoil"]


def test_fine_tuning_starts_from_the_given_models_weights(volume, model, tmp_path):
    from safetensors.torch import load_file

    # a learning rate so small that the weights stay where they start
    train(volume, tmp_path / "tuned", 2, tasks=["mri"], init=model, lr=1e-9, seed=1)
    train(volume, tmp_path / "fresh", 2, tasks=["mri"], lr=1e-9, seed=1)
    start = load_file(str(model.with_suffix(".safetensors")))
    tuned = load_file(str(tmp_path / "tuned.safetensors"))
    fresh = load_file(str(tmp_path / "fresh.safetensors"))

    def distance(weights):
        return sum(float((weights[k].float() - start[k].float()).abs().sum()) for k in start)

    assert distance(tuned) < 1e-3 * distance(fresh)
    card = json.loads((tmp_path / "tuned.json").read_text())
    assert card["training"]["initialised_from"] == {
        "model": "tiny",
        "steps": 4,
        "tasks": ["blur", "ct-limited", "ct-sparse", "mri"],
    }
    assert card["architecture"] == json.loads(model.read_text())["architecture"]
    with pytest.raises(medrecon.InputError, match="not bcdm"):
        train(volume, tmp_path / "x", 2, method="bcdm", tasks=["mri"], init=model)
    with pytest.raises(medrecon.InputError, match="--resume continues one"):
        train(volume, tmp_path / "tuned", 2, tasks=["mri"], init=model, resume=True)
    with pytest.raises(medrecon.InputError, match="--init"):
        train(volume, tmp_path / "x", 2, tasks=["mri"], init=tmp_path / "missing.json")
    with pytest.raises(medrecon.InputError, match="trained with gaussian conditioning"):
        train(volume, tmp_path / "x", 2, tasks=["mri"], init=model, conditioning="flat")
    assert not (tmp_path / "x.json").exists()


def test_a_resumed_run_keeps_its_conditioning_start_and_tasks(volume, model, tmp_path):
    """Resuming a fine-tuning (no --init, no --conditioning: the script's resume) goes on training
    the same model: flat conditioning stays flat, the card still names the start, and tasks or
    ranges other than the run's are refused instead of silently training another model."""
    options = {"mri": {"acceleration": (10.0, 14.0)}}
    train(volume, tmp_path / "flat", 2, tasks=["mri"], task_options=options, conditioning="flat")
    train(volume, tmp_path / "flat", 4, tasks=["mri"], task_options=options, resume=True)
    card = json.loads((tmp_path / "flat.json").read_text())
    assert card["architecture"]["prior_variance"] is None and card["training"]["steps"] == 4
    train(volume, tmp_path / "tuned", 2, tasks=["mri"], init=model, seed=1)
    train(volume, tmp_path / "tuned", 4, tasks=["mri"], seed=1, resume=True)
    card = json.loads((tmp_path / "tuned.json").read_text())
    assert card["training"]["initialised_from"]["model"] == "tiny"
    with pytest.raises(medrecon.InputError, match="resume with the run's --tasks and --task-option"):
        train(volume, tmp_path / "flat", 6, tasks=["mri"], resume=True)  # default range 4-8x
    with pytest.raises(medrecon.InputError, match="trained with flat conditioning"):
        train(
            volume,
            tmp_path / "flat",
            6,
            tasks=["mri"],
            task_options=options,
            resume=True,
            conditioning="gaussian",
        )


def test_a_model_trains_on_operators_with_a_null_space(volume, tmp_path):
    """Inpainting and super-resolution see nothing of part of the image: with the default Gaussian
    conditioning their losses are those of images in [0, 1]; BCDM's flat one gives ~1e3."""
    history = {}
    for conditioning in ("gaussian", "flat"):
        out = tmp_path / conditioning
        train(volume, out, 2, tasks=["inpainting", "super-resolution"], conditioning=conditioning)
        card = json.loads(out.with_suffix(".json").read_text())
        history[conditioning] = card["training"]["history"][-1]["validation_loss"]
        assert card["operator_classes"] == ["Downsample", "Inpainting"]
        assert card["architecture"]["prior_variance"] == (1.0 if conditioning == "gaussian" else None)
    assert history["gaussian"] < 0.5 and history["flat"] > 100
    with pytest.raises(medrecon.InputError, match="missing must be LOW:HIGH"):
        train(
            volume,
            tmp_path / "x",
            2,
            tasks=["inpainting"],
            task_options={"inpainting": {"missing": (0.5, 1.2)}},
        )
    with pytest.raises(medrecon.InputError, match="--conditioning"):
        train(volume, tmp_path / "x", 2, tasks=["inpainting"], conditioning="uniform")
    with pytest.raises(medrecon.InputError, match="factors must be among 2, 4, 8"):
        options = {"super-resolution": {"factors": (2, 3)}}
        train(volume, tmp_path / "x", 2, tasks=["super-resolution"], task_options=options)


def test_each_task_validates_on_an_operator_inside_its_training_range():
    """A model trained outside the default ranges (e.g. MRI 10-14x as a reference for 12x) is
    validated on an operator it trains on, not on the default 6x or 0-100 degrees."""
    from medrecon_ct.training import ct_limited_task
    from medrecon_mri.training import mri_task

    for lo, hi in [(4.0, 8.0), (10.0, 14.0), (2.0, 3.0)]:
        assert lo <= mri_task((lo, hi)).validation["acceleration"] <= hi
    assert mri_task().validation["acceleration"] == 6.0
    for lo, hi in [(60.0, 150.0), (30.0, 60.0), (120.0, 180.0)]:
        assert lo <= ct_limited_task((lo, hi)).validation["angle_range"][1] <= hi
    assert ct_limited_task().validation["angle_range"] == [0.0, 100.0]


def test_sparse_view_and_inpainting_tasks_validate_inside_their_ranges_too():
    from medrecon_ct.training import ct_sparse_task
    from medrecon_restoration.training import inpainting_task

    assert ct_sparse_task((40, 60)).validation["views"] == 40 and ct_sparse_task().validation["views"] == 12
    assert inpainting_task((0.2, 0.4)).validation["missing"] == 0.4
    assert inpainting_task().validation["missing"] == 0.7


@pytest.mark.parametrize("shape", [(3, 61, 61), (2, 233, 197)])
def test_both_samplers_run_on_odd_sizes_with_std_maps(model, shape):
    for sampler, operator in (("diff-unfolding", {"name": "ct-parallel", "views": 12}),):
        m = phantom_problem(shape, operator)
        recipe = {
            "prior": {"name": "conditional", "weights": str(model)},
            "sampler": {"name": sampler, "steps": 2, "samples": 2},
        }
        steps = []
        result = medrecon.reconstruct(recipe, m, device="cpu", progress=steps.append)
        assert result.image.shape == shape and result.std.shape == shape
        assert torch.isfinite(result.image).all() and float(result.std.mean()) > 0
        assert [s.index for s in steps] == [0, 1] and result.info["nfe"] == 2 * 2 * 2


def test_tv_z_and_cancel(model):
    m = phantom_problem((4, 32, 32), {"name": "mri-multicoil", "acceleration": 4})
    recipe = {
        "prior": {"name": "conditional", "weights": str(model)},
        "sampler": {"name": "diff-unfolding", "steps": 3, "tv_z": 0.01},
    }
    assert medrecon.reconstruct(recipe, m, device="cpu").image.shape == (4, 32, 32)
    with pytest.raises(medrecon.Cancelled):
        medrecon.reconstruct(recipe, m, device="cpu", cancel=lambda: True)


def test_data_consistency_steps_bring_the_estimate_to_the_measurement(model):
    """`data_consistency` (the default; 2D and volumes) refines each network estimate by CG on
    (A^H A + gamma I) x = A^H y + gamma x0: with gamma = 0 a tiny, barely trained model's images
    then fit y far better; `result = "denoised"` returns the network's last estimate before that
    step, `gamma` holds the step near it."""
    from medrecon.samples import phantom_volume

    op = medrecon.build_operator(
        medrecon.ComponentRecipe("mri-multicoil", {"acceleration": 4}), shape=(2, 40, 40)
    )
    x = torch.from_numpy(phantom_volume((2, 40, 40))).to(op.domain_dtype)
    problem = medrecon.Problem(op, op.simulate(x, 0.001, seed=1), 0.001)
    prior = medrecon.build_component(
        "prior", medrecon.ComponentRecipe("conditional", {"weights": str(model)})
    )

    def misfit(**params):
        sampler = medrecon.build_component(
            "sampler", medrecon.ComponentRecipe("diff-unfolding", {"steps": 3, **params})
        )
        result = sampler.run(problem, prior, seed=0)
        return float((op(result.image.to(op.domain_dtype)) - problem.y).norm() / problem.y.norm())

    plain, refined = misfit(data_consistency=False), misfit(gamma=0.0)
    assert refined < 0.5 * plain
    assert misfit(gamma=0.0, result="denoised") > refined
    assert refined < misfit(gamma=1.0) < plain
    assert refined < misfit() < plain  # the default: gamma 0.3
    with pytest.raises(medrecon.InputError, match="gamma must be >= 0"):
        misfit(gamma=-1.0)
    with pytest.raises(medrecon.InputError, match="needs data_consistency = true"):
        misfit(data_consistency=False, tv_z=0.01)
    with pytest.raises(medrecon.InputError, match="choose one of 'refined', 'denoised'"):
        misfit(result="last")


def test_an_operator_the_model_never_saw_plugs_into_its_physics_blocks(model, caplog):
    """The third-party example plugin's pixel binning and the built-in inpainting: not in training."""
    sys.path.insert(0, str(Path(__file__).parent / "plugin_dists" / "medrecon-example"))
    try:
        from medrecon_example.plugin import PixelBinning
    finally:
        sys.path.pop(0)
    from medrecon.samples import phantom_volume

    x = torch.from_numpy(phantom_volume((2, 40, 40)))
    prior = medrecon.build_component(
        "prior", medrecon.ComponentRecipe("conditional", {"weights": str(model)})
    )
    sampler = medrecon.build_component("sampler", medrecon.ComponentRecipe("diff-unfolding", {"steps": 2}))
    for op in (
        PixelBinning((2, 40, 40), factor=2),
        medrecon.build_operator(medrecon.ComponentRecipe("inpainting", {"missing": 0.5}), shape=(2, 40, 40)),
    ):
        problem = medrecon.Problem(op, op(x) + 0.01 * torch.randn(op.range_shape), 0.01)
        with caplog.at_level(logging.WARNING):
            result = sampler.run(problem, prior)
        assert result.image.shape == (2, 40, 40) and torch.isfinite(result.image).all()
        assert f"not on {type(op).__name__}" in caplog.text


class Squared(medrecon.Operator):
    """A non-linear operator: y = x^2."""

    linear = False

    def __init__(self, shape):
        super().__init__()
        self.domain_shape = self.range_shape = tuple(shape)

    def forward(self, x):
        return x**2

    def adjoint(self, y):
        raise NotImplementedError


def test_bad_inputs_get_clear_errors(model, tmp_path):
    conditional = {"name": "conditional", "weights": str(model)}
    complex_mri = phantom_problem((2, 32, 32), {"name": "mri-multicoil", "complex_image": True})
    with pytest.raises(medrecon.InputError, match="trained on real images"):
        medrecon.reconstruct({"prior": conditional, "sampler": {"name": "diff-unfolding"}}, complex_mri)
    mri = phantom_problem((2, 32, 32), {"name": "mri-multicoil"})
    with pytest.raises(medrecon.InputError, match="use sampler 'diff-unfolding'"):
        medrecon.reconstruct({"prior": conditional, "sampler": {"name": "bcdm"}}, mri)
    with pytest.raises(medrecon.IncompatibleError, match="needs a conditional model"):
        medrecon.reconstruct({"prior": {"name": "tv"}, "sampler": {"name": "diff-unfolding"}}, mri)
    with pytest.raises(medrecon.InputError, match="conditional model"):
        medrecon.build_component("prior", medrecon.ComponentRecipe("diffusion", {"weights": str(model)}))
    with pytest.raises(medrecon.InputError, match="not a conditional model"):
        medrecon.build_component("prior", medrecon.ComponentRecipe("conditional", {"weights": "brain-1mm"}))
    tiny = phantom_problem((2, 1, 9), {"name": "inpainting", "missing": 0.3})
    with pytest.raises(medrecon.InputError, match="too small"):
        medrecon.reconstruct({"prior": conditional, "sampler": {"name": "diff-unfolding"}}, tiny)
    prior = medrecon.build_component(
        "prior", medrecon.ComponentRecipe("conditional", {"weights": str(model)})
    )
    sampler = medrecon.build_component("sampler", medrecon.ComponentRecipe("diff-unfolding", {}))
    squared = Squared((2, 32, 32))
    with pytest.raises(medrecon.IncompatibleError, match="needs a linear operator"):
        sampler.run(medrecon.Problem(squared, torch.ones(2, 32, 32), 0.01), prior)
    # weights that do not fit the card, and a damaged file: no model is built
    card = json.loads(model.read_text())
    card["architecture"]["blocks"] = 3
    (tmp_path / "wrong.json").write_text(json.dumps(card))
    (tmp_path / card["weights"]).write_bytes(model.with_suffix(".safetensors").read_bytes())
    with pytest.raises(medrecon.InputError, match="do not fit the card"):
        medrecon.build_component(
            "prior", medrecon.ComponentRecipe("conditional", {"weights": str(tmp_path / "wrong.json")})
        )
    (tmp_path / card["weights"]).write_bytes(b"not safetensors")
    with pytest.raises(medrecon.InputError, match="damaged"):
        medrecon.build_component(
            "prior", medrecon.ComponentRecipe("conditional", {"weights": str(tmp_path / "wrong.json")})
        )
    with pytest.raises(medrecon.InputError, match="--method"):
        train_conditional([], tmp_path / "x", method="dps")


def test_train_conditional_from_the_command_line(volume, tmp_path):
    from click.testing import CliRunner

    from medrecon.apps.cli import main

    args = ["train-conditional", str(volume), "-o", str(tmp_path / "m"), "--method", "bcdm"]
    args += ["--tasks", "mri", "--task-option", "mri.acceleration=5:6"]
    args += ["--patch-sizes", "16", "--batch-size", "1", "--steps", "2"]
    args += ["--holdout", "2:5", "--validation", "18:21", "--device", "cpu"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "m.json").read_text())
    assert card["method"] == "bcdm" and card["operators"][0]["acceleration"] == [5.0, 6.0]
    assert card["architecture"]["blocks"] == 3 and card["training"]["steps"] == 2
    bad = CliRunner().invoke(main, [*args[:6], "--tasks", "mri,pet"])
    assert bad.exit_code != 0 and "no task named 'pet'" in bad.output
    bad = CliRunner().invoke(main, [*args[:6]])  # BCDM is trained per task
    assert bad.exit_code != 0 and "give the task(s) with --tasks" in bad.output
    bad = CliRunner().invoke(main, [*args[:8], "--task-option", "mri.acceleration=high"])
    assert bad.exit_code != 0 and "acceleration" in bad.output


def test_a_conditional_model_in_a_monai_pipeline(model):
    from monai.data import MetaTensor

    from medrecon.monai import Reconstructd, SimulateMeasurementd
    from medrecon.samples import phantom_volume

    image = MetaTensor(
        torch.from_numpy(phantom_volume((8, 32, 32))).permute(2, 1, 0)[None], affine=torch.eye(4)
    )
    simulate = SimulateMeasurementd(
        keys="image", operator={"name": "ct-parallel", "views": 16}, noise_std=0.01
    )
    recipe = {
        "prior": {"name": "conditional", "weights": str(model)},
        "sampler": {"name": "diff-unfolding", "steps": 2},
    }
    out = Reconstructd(keys="image_measurement", recipe=recipe)(simulate({"image": image}))
    assert out["reconstruction"].shape == image.shape
    torch.testing.assert_close(out["reconstruction"].affine, image.affine)


def test_the_conditioning_keeps_noise_out_of_what_the_operator_cannot_see(model):
    """BCDM's flat prior puts x_t / sqrt(a) (std ~150 at t = 999) where A sees nothing; the
    default Gaussian term keeps that part at E[x0 | x_t]; where A sees everything both agree."""
    from medrecon.samples import phantom_volume

    def build(**params):
        return medrecon.build_component(
            "prior", medrecon.ComponentRecipe("conditional", {"weights": str(model), **params})
        )

    default, flat = build(), build(conditioning="flat")
    assert default.network.prior_variance == 1.0 and flat.network.prior_variance is None
    truth = torch.from_numpy(phantom_volume((2, 32, 32)))
    t = 999
    abar = default.alphas_cumprod[t]
    x_t = abar.sqrt() * truth + (1 - abar).sqrt() * torch.randn(
        truth.shape, generator=torch.Generator().manual_seed(0)
    )
    for operator, sees_all in (
        ({"name": "inpainting", "missing": 0.7}, False),
        ({"name": "mri-multicoil"}, True),
    ):
        op = medrecon.build_operator(
            medrecon.ComponentRecipe.from_dict("operator", operator), shape=(2, 32, 32)
        )
        problem = medrecon.Problem(op, op(truth.to(op.domain_dtype)), 0.0)
        inits = [p.network.initial(x_t[None], abar, p.condition(problem))[0] for p in (default, flat)]
        if sees_all:
            torch.testing.assert_close(inits[0], inits[1], rtol=1e-3, atol=1e-3)
        else:
            assert float(inits[0].std()) < 2 and float(inits[1].std()) > 50
    with pytest.raises(medrecon.InputError, match="prior_variance must be > 0"):
        build(prior_variance=-1.0)
    with pytest.raises(medrecon.InputError, match="'flat' has none"):
        build(conditioning="flat", prior_variance=2.0)
