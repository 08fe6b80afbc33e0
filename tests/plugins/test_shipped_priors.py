"""The priors and the sample that ship in the package: provenance, held-out data, size, usefulness."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import medrecon
from medrecon.metrics import psnr
from medrecon.samples import brain_sample, brain_sample_path


def shipped_dir() -> Path:
    from medrecon_priors.network import SHIPPED

    return SHIPPED


def card(name: str) -> dict:
    return json.loads((shipped_dir() / f"{name}.json").read_text())


def test_shipped_files_stay_under_50_mb():
    """Five models (three priors, two conditional models at 11.5 MB each) and the samples: 38 MB."""
    files = [*shipped_dir().iterdir(), brain_sample_path("1mm"), brain_sample_path("2.8mm")]
    names = {f.name for f in files}
    assert {"brain-1mm.json", "brain-1mm.safetensors", "brain-axial.json", "motion-kernels.json"} <= names
    assert {"bcdm-mri.safetensors", "diff-unfolding.safetensors"} <= names
    assert sum(f.stat().st_size for f in files) < 45e6


def test_brain_axial_card_says_where_its_data_came_from():
    c = card("brain-axial")
    data = c["training"]["data"]
    assert data["files"] == ["mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"]
    assert data["holdout"] == [80, 96] and data["holdout_guard"] == 4 and data["validation_slices"] == 16
    assert "McGill University" in c["training"]["notice"] and "nilearn" in c["training"]["notice"]
    assert c["image_size"] == [64, 64] and c["training"]["steps"] >= 1000
    assert c["training"]["history"][-1]["validation_loss"] < c["training"]["history"][0]["validation_loss"]


def test_the_brain_sample_is_exactly_the_held_out_slab():
    """Rebuilt from nilearn's copy of the template by the code that trained the prior."""
    from importlib.resources import files

    from medrecon.apps.training import holdout_volume

    template = files("nilearn.datasets") / "data" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    expected, affine = holdout_volume(str(template), 2, 64, (80, 96))
    volume, sample_affine = brain_sample("2.8mm")
    assert volume.shape == (16, 64, 64) and volume.dtype == np.float32
    np.testing.assert_allclose(volume, expected, atol=1e-6)
    np.testing.assert_allclose(sample_affine, affine, atol=1e-5)
    assert sample_affine[2, 3] == pytest.approx(-72 + 80)  # MNI z of axial slice 80


def test_priors_load_by_name_and_path(host):
    from medrecon.api import build_component
    from medrecon.host.recipe import ComponentRecipe

    def prior(weights):
        return build_component("prior", ComponentRecipe("diffusion", {"weights": weights}), host)

    by_name, by_path = prior("brain-axial"), prior(str(shipped_dir() / "brain-axial.json"))
    assert by_name.card == by_path.card and by_name.data_range == (-1.0, 1.0)
    with pytest.raises(medrecon.InputError, match="blur-kernel prior, not an image prior"):
        prior("motion-kernels")


def test_brain_axial_beats_cg_sense_on_held_out_slices(host):
    """The 64 x 64 prior is worth its bytes: 8x MRI of 4 held-out slices, 20 DDS steps."""
    volume, _ = brain_sample("2.8mm")
    truth = np.ascontiguousarray(volume[6:10])
    m = medrecon.simulate(
        truth, {"name": "mri-multicoil", "coils": 8, "acceleration": 8}, noise_std=0.005, host=host
    )
    cg = medrecon.reconstruct({"sampler": {"name": "cg", "iterations": 30}}, m, host=host)
    recipe = {
        "prior": {"name": "diffusion", "weights": "brain-axial"},
        "sampler": {"name": "dds", "steps": 20, "tv_z": 0.002},
    }
    dds = medrecon.reconstruct(recipe, m, host=host)
    assert psnr(truth, dds.image.numpy()) > psnr(truth, cg.image.numpy()) + 1.0


def test_brain_1mm_card_says_its_scale_data_and_what_was_held_out():
    c = card("brain-1mm")
    data = c["training"]["data"]
    assert c["pixel_spacing_mm"] == [1.0, 1.0] and c["orientation"] == "axial, coronal, sagittal"
    assert c["intensity"]["complex"] and c["intensity"]["background"] == 0.0 and c["image_size"] is None
    assert data["files"] == ["mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"]
    assert [f.split("_")[2] for f in data["tissue_maps"]] == ["gm", "wm"]
    # the test slab and the validation slab, each with its guard, are cut out of every orientation
    assert data["holdout"] == [80, 96] and data["validation"] == [120, 128] and data["holdout_guard"] == 4
    assert data["excluded_slices"] == [[76, 100], [116, 132]]
    assert not c["architecture"]["mid_block_attention"] and not any(c["architecture"]["attention_levels"])
    assert "McGill University" in c["training"]["notice"]
    history = c["training"]["history"]
    assert c["training"]["steps"] >= 2000 and history[-1]["validation_loss"] < history[0]["validation_loss"]


def test_the_1mm_sample_is_exactly_the_held_out_slab_on_the_templates_grid():
    from importlib.resources import files

    import nibabel as nib

    template = files("nilearn.datasets") / "data" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    image = nib.load(str(template))
    volume, affine = brain_sample("1mm")
    expected = np.asarray(image.dataobj, dtype=np.float32)[:, :, 80:96].transpose(2, 1, 0) / 255.0
    assert volume.shape == (16, 233, 197) and volume.dtype == np.float32
    np.testing.assert_allclose(volume, expected, atol=1e-6)
    # voxel (i, j, 0) of the sample is voxel (i, j, 80) of the template: the same world point
    np.testing.assert_allclose(affine @ [10, 20, 0, 1], image.affine @ [10, 20, 80, 1], atol=1e-5)


def test_brain_1mm_beats_cg_sense_at_full_resolution(host):
    """The native prior on two held-out 233 x 197 slices at 1 mm, 8x MRI, 20 DDS steps."""
    volume, affine = brain_sample("1mm")
    truth = np.ascontiguousarray(volume[7:9])
    op = {"name": "mri-multicoil", "coils": 8, "acceleration": 8}
    m = medrecon.simulate(truth, op, noise_std=0.005, affine=affine, host=host)
    cg = medrecon.reconstruct({"sampler": {"name": "cg", "iterations": 30}}, m, host=host)
    recipe = {"prior": {"name": "diffusion", "weights": "brain-1mm"}, "sampler": {"name": "dds", "steps": 20}}
    dds = medrecon.reconstruct(recipe, m, host=host)
    assert "warnings" not in dds.info  # 1 mm data, a 1 mm prior
    assert psnr(truth, dds.image.numpy()) > psnr(truth, cg.image.numpy()) + 1.0


def test_brain_axial_card_says_its_pixel_size_and_orientation():
    c = card("brain-axial")
    geometry = c["training"]["data"]["geometry"][0]
    assert c["pixel_spacing_mm"] == [geometry["pixel_scale"]] * 2 and c["orientation"] == "axial"


def test_the_shipped_conditional_models_beat_cg_sense_on_a_held_out_slice(host):
    """bcdm-mri (3 samples of 2 steps) and diff-unfolding (1 step) with their default samplers (each
    estimate refined by CG) on a held-out 233 x 197 slice at 1 mm, 8x MRI: above CG-SENSE (measured
    with the shipped weights: +4.7 and +2.6 dB), and no card warning (an operator and a scale they
    were trained on)."""
    volume, affine = brain_sample("1mm")
    truth = np.ascontiguousarray(volume[8:9])
    op = {"name": "mri-multicoil", "coils": 8, "acceleration": 8}
    m = medrecon.simulate(truth, op, noise_std=0.005, affine=affine, host=host)
    cg = psnr(
        truth, medrecon.reconstruct({"sampler": {"name": "cg", "iterations": 30}}, m, host=host).image.numpy()
    )
    for sampler, weights, margin in (("bcdm", "bcdm-mri", 2.0), ("diff-unfolding", "diff-unfolding", 1.0)):
        recipe = {"prior": {"name": "conditional", "weights": weights}, "sampler": {"name": sampler}}
        result = medrecon.reconstruct(recipe, m, host=host)
        assert "warnings" not in result.info
        assert psnr(truth, result.image.numpy()) > cg + margin, sampler
