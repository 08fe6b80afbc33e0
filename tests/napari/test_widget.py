"""The Reconstruct dock widget in a real viewer (xvfb): choices, a run end to end, cancel, screenshot."""

from __future__ import annotations

import numpy as np
import pytest

import medrecon

pytestmark = pytest.mark.napari


@pytest.fixture
def viewer_with_widget(make_napari_viewer, monkeypatch):
    import medrecon.host.plugin as plugin
    from tests.helpers import ToyPlugin, builtin_host

    host = builtin_host()
    host.register(ToyPlugin(), name="toy", distribution="toy-dist", version="0.1")  # a third party
    monkeypatch.setattr(plugin, "_default_host", host)
    viewer = make_napari_viewer()
    from medrecon.samples import phantom_volume

    affine = np.diag([2.0, 0.8, 0.8, 1.0])
    affine[:3, 3] = [10.0, -4.0, 3.0]
    layer = viewer.add_image(phantom_volume((4, 32, 32)), name="phantom", affine=affine)
    _, widget = viewer.window.add_plugin_dock_widget("medrecon", "Reconstruct")
    return viewer, widget, layer


def test_choices_come_from_the_live_registry(viewer_with_widget):
    _, widget, layer = viewer_with_widget
    assert "scale" in widget.operator.choices  # the third-party operator, no change to the widget
    assert {"mri-multicoil", "ct-parallel"} <= set(widget.operator.choices)
    assert {"cg", "dds", "mmps"} <= set(widget.sampler.choices) and "(none)" in widget.prior.choices
    assert widget.source.value is layer
    widget.sampler.value = "cg"
    assert [w.name for w in widget.forms["sampler"]] == ["iterations", "tikhonov", "tol"]


def test_the_device_list_offers_each_gpu_and_auto_says_which(viewer_with_widget, monkeypatch):
    """This machine has no GPU: CUDA is faked at torch's level to see what a GPU user is offered."""
    import torch

    from medrecon.device import resolve_device
    from medrecon_napari._widget import device_choices

    _, widget, _ = viewer_with_widget
    assert widget.device.choices == ("auto", "cpu", *(f"cuda:{i}" for i in range(torch.cuda.device_count())))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device_choices() == ["auto", "cpu", "cuda:0", "cuda:1"]
    widget.device.value = "auto"
    assert "cuda:0 (auto)" in widget.cost_note() and resolve_device("auto").type == "cuda"


def test_a_run_adds_the_reconstruction_over_its_source(viewer_with_widget, qtbot, tmp_path):
    viewer, widget, layer = viewer_with_widget
    widget.operator.value = "mri-multicoil"
    widget.forms["operator"]["acceleration"].value = "2.0"
    widget.prior.value = "(none)"
    widget.sampler.value = "cg"
    widget.noise.value = 0.01
    widget.forms["sampler"]["iterations"].value = 10
    widget.device.value = "cpu"
    widget.start()
    assert not widget.run_button.enabled and widget.cancel_button.enabled
    qtbot.waitUntil(lambda: "phantom cg" in viewer.layers and widget.run_button.enabled, timeout=60_000)
    result = viewer.layers["phantom cg"]
    np.testing.assert_allclose(result.affine.affine_matrix, layer.affine.affine_matrix)
    expected = medrecon.reconstruct(
        {"sampler": {"name": "cg", "iterations": 10}},
        medrecon.simulate(layer.data, {"name": "mri-multicoil", "acceleration": 2.0}, noise_std=0.01, seed=0),
        device="cpu",
    ).image.numpy()
    np.testing.assert_allclose(result.data, expected, rtol=1e-5, atol=1e-6)
    assert "PSNR" in widget.status.value and "medrecon preview" not in viewer.layers
    viewer.window._qt_window.resize(1400, 900)
    shot = viewer.screenshot(str(tmp_path / "reconstruct_widget.png"), canvas_only=False)
    assert shot.shape[0] > 200


def start_a_long_run(widget, qtbot, steps_done: int = 2) -> None:
    """A 1000-step DDS run with the Gaussian prior, started and waited on for `steps_done` steps."""
    widget.operator.value = "mri-multicoil"
    widget.prior.value = "gaussian"
    widget.sampler.value = "dds"
    widget.forms["sampler"]["steps"].value = 1000
    widget.device.value = "cpu"
    widget.start()
    qtbot.waitUntil(lambda: widget.progress.value >= steps_done, timeout=30_000)


def test_cancel_stops_within_a_step_and_adds_nothing(viewer_with_widget, qtbot):
    viewer, widget, _ = viewer_with_widget
    start_a_long_run(widget, qtbot)
    widget.cancel()
    qtbot.waitUntil(lambda: widget.run_button.enabled, timeout=30_000)
    assert widget.progress.value < 1000
    assert "phantom dds" not in viewer.layers  # no result; the last preview stays, marked
    [kept] = [layer for layer in viewer.layers if "(cancelled at step" in layer.name]
    assert kept.name.startswith("phantom dds (cancelled at step ") and kept.name.endswith(" of 1000)")
    assert kept.metadata["medrecon_recipe"]["sampler"]["steps"] == 1000
    assert "medrecon preview" not in viewer.layers and "cancelled" in widget.status.value


def test_the_run_shows_in_the_activity_dock_and_cancels_from_there(viewer_with_widget, qtbot):
    from napari.utils import progress

    viewer, widget, _ = viewer_with_widget
    start_a_long_run(widget, qtbot)
    [bar] = [p for p in progress._all_instances if p.desc.startswith("medrecon")]
    assert bar.desc == "medrecon dds" and bar.total == 1000 and bar.n >= 2
    bar.cancel()  # what the activity dock's cancel button does
    qtbot.waitUntil(lambda: widget.run_button.enabled, timeout=30_000)
    assert widget.progress.value < 1000 and "cancelled" in widget.status.value
    assert bar not in progress._all_instances  # the dock's bar is gone with the run
    assert "phantom dds" not in viewer.layers


def test_closing_the_viewer_during_a_run_stops_the_run_within_a_step(viewer_with_widget, qtbot):
    viewer, widget, _ = viewer_with_widget
    start_a_long_run(widget, qtbot)
    worker, ends = widget.worker, []
    worker.aborted.connect(lambda: ends.append("aborted"))
    worker.returned.connect(lambda _: ends.append("returned"))
    viewer.close()  # what the window's close button does, with a run under way
    qtbot.waitUntil(lambda: not worker.is_running, timeout=30_000)  # no orphan thread left running
    qtbot.waitUntil(lambda: bool(ends), timeout=5_000)
    assert ends == ["aborted"]  # stopped at a step, not run to its end behind a closed window
    assert widget.activity is None  # the activity dock's bar went with it


def test_runs_land_side_by_side_with_their_recipe_and_scores(viewer_with_widget, qtbot):
    viewer, widget, layer = viewer_with_widget
    widget.operator.value = "mri-multicoil"
    widget.prior.value = "(none)"
    widget.sampler.value = "cg"
    widget.device.value = "cpu"
    for iterations, name in ((3, "phantom cg"), (15, "phantom cg [2]")):
        widget.forms["sampler"]["iterations"].value = iterations
        widget.start()
        qtbot.waitUntil(lambda name=name: name in viewer.layers and widget.run_button.enabled, timeout=60_000)
        meta = viewer.layers[name].metadata
        assert meta["medrecon_recipe"]["sampler"]["iterations"] == iterations
        assert meta["medrecon_info"]["seconds"] > 0 and widget.status.value.startswith(f"{name}: PSNR")
    first, second = viewer.layers["phantom cg"].metadata, viewer.layers["phantom cg [2]"].metadata
    assert second["psnr_db"] > first["psnr_db"]  # more CG iterations fit the 4x data better
    viewer.canvas.grid.enabled = True  # side by side, each over the source
    placed = viewer.layers["phantom cg [2]"].affine.affine_matrix
    np.testing.assert_allclose(placed, layer.affine.affine_matrix)


def test_the_status_says_the_cost_before_and_during_a_run(viewer_with_widget, qtbot, tmp_path):
    from qtpy.QtCore import QTimer

    viewer, widget, _ = viewer_with_widget
    widget.operator.value = "mri-multicoil"
    widget.prior.value = "gaussian"
    widget.sampler.value = "dds"
    widget.device.value = "cpu"
    widget.forms["sampler"]["steps"].value = 7
    assert widget.status.value == "NFE 7 x 4 slice(s) on cpu"
    widget.forms["sampler"]["samples"].value = 2
    assert widget.status.value == "NFE 14 x 4 slice(s) on cpu"
    widget.sampler.value = "cg"
    assert widget.status.value == "no network, 4 slice(s) on cpu"
    widget.sampler.value = "dds"
    widget.forms["sampler"]["steps"].value = 1000
    widget.start()
    ticks = []
    QTimer.singleShot(50, lambda: ticks.append(widget.cancel_button.enabled))  # the viewer stays live
    qtbot.waitUntil(lambda: widget.progress.value >= 3, timeout=30_000)
    assert ticks == [True]  # the timer fired while the run was under way
    assert "of 1000" in widget.status.value and "s left" in widget.status.value
    layers = len(viewer.layers)
    widget.start()  # a second run while one is under way is refused, nothing else changes
    assert widget.status.value == "a run is under way: wait for it or cancel it first"
    assert len(viewer.layers) == layers
    viewer.window._qt_window.resize(1400, 900)  # mid-run, with the progress bar and the preview
    shot = viewer.screenshot(str(tmp_path / "running.png"), canvas_only=False)
    assert shot.shape[0] > 200 and float(shot[..., :3].std()) > 5 and (tmp_path / "running.png").exists()
    widget.cancel()
    qtbot.waitUntil(lambda: widget.run_button.enabled, timeout=30_000)


def test_the_std_map_reads_as_uncertainty(viewer_with_widget, qtbot):
    viewer, widget, _ = viewer_with_widget
    widget.operator.value = "mri-multicoil"
    widget.prior.value = "gaussian"
    widget.sampler.value = "dds"
    widget.forms["sampler"]["steps"].value = 3
    widget.forms["sampler"]["samples"].value = 3
    widget.device.value = "cpu"
    widget.start()
    qtbot.waitUntil(lambda: "phantom dds std" in viewer.layers and widget.run_button.enabled, timeout=60_000)
    std = viewer.layers["phantom dds std"]
    assert std.colormap.name == "magma" and std.contrast_limits[0] == 0.0
    assert 0 < std.contrast_limits[1] <= float(std.data.max()) + 1e-6


def test_errors_become_notifications_and_the_viewer_stays_usable(viewer_with_widget, qtbot):
    viewer, widget, _ = viewer_with_widget
    widget.operator.value = "ct-parallel"  # phantom slices are square: fine; ask for a bad pairing instead
    widget.prior.value = "tv"
    widget.sampler.value = "dds"  # needs a diffusion prior
    widget.device.value = "cpu"
    widget.start()
    qtbot.waitUntil(lambda: widget.run_button.enabled, timeout=30_000)
    assert widget.status.value.startswith("failed: ") and "needs a diffusion prior" in widget.status.value
    assert len(viewer.layers) == 1


def test_forms_use_fitting_widgets(viewer_with_widget):
    from magicgui.widgets import CheckBox, ComboBox, LineEdit, SpinBox

    _, widget, _ = viewer_with_widget
    widget.operator.value = "mri-multicoil"
    form = widget.forms["operator"]
    assert isinstance(form["mask_type"], ComboBox) and set(form["mask_type"].choices) == {
        "equispaced",
        "random",
        "poisson",
    }
    assert isinstance(form["coils"], SpinBox) and form["coils"].max >= 10**6  # no 999 ceiling
    assert isinstance(form["complex_image"], CheckBox)
    assert isinstance(form["acceleration"], LineEdit)  # floats as exact text
    widget.operator.value = "ct-parallel"
    assert isinstance(widget.forms["operator"]["detectors"], LineEdit)  # int | None: empty means default
    assert widget.recipe()["operator"] == {"name": "ct-parallel"}


def test_a_bundle_opens_with_a_first_reconstruction_and_reconstructs_from_the_widget(
    viewer_with_widget, qtbot, tmp_path
):
    from medrecon.samples import phantom_volume

    viewer, widget, _ = viewer_with_widget
    affine = np.diag([0.9, 0.9, 2.5, 1.0])
    truth = phantom_volume((4, 32, 32))
    m = medrecon.simulate(truth, {"name": "ct-parallel", "views": 30}, noise_std=0.05, seed=0, affine=affine)
    path = medrecon.save_bundle(tmp_path / "ct.h5", m)
    layers = viewer.open(str(path), plugin="medrecon")
    names = [layer.name for layer in layers]
    assert names == ["ct fbp", "ct measurement (log |y|)", "ct ground truth"]
    first = viewer.layers["ct fbp"]
    from medrecon_napari._affine import layer_affine

    np.testing.assert_allclose(first.affine.affine_matrix, layer_affine(affine))
    assert widget.source_kind.value.startswith("an image: the ground truth")  # the phantom, still
    widget.source.value = first
    assert widget.preset.value.startswith("sparse-view CT")  # the bundle's operator chose the preset
    assert widget.source_kind.value.startswith("a measurement (ct-parallel)")  # said on the form
    widget.prior.value = "(none)"
    widget.sampler.value = "cg"
    widget.device.value = "cpu"
    widget.start()
    qtbot.waitUntil(lambda: "ct fbp cg" in viewer.layers and widget.run_button.enabled, timeout=60_000)
    expected = medrecon.reconstruct(
        {"sampler": {"name": "cg"}}, medrecon.load_bundle(path), device="cpu"
    ).image.numpy()
    np.testing.assert_allclose(viewer.layers["ct fbp cg"].data, expected, rtol=1e-5, atol=1e-5)
    assert "PSNR" in widget.status.value  # the bundle's ground truth is used


def test_the_brain_sample_reconstructs_with_the_shipped_prior(viewer_with_widget, qtbot, tmp_path):
    """The tutorial path: open the 1 mm sample, pick the MRI 8x preset (DDS with the shipped
    brain-1mm prior, the demo's tuned settings), fewer steps, run: the result lies over the sample
    and is what the preset's recipe gives from the CLI or the API."""
    from medrecon.apps.presets import presets

    viewer, widget, _ = viewer_with_widget
    viewer.open_sample("medrecon", "brain-1mm")
    brain = viewer.layers["brain-1mm sample"]
    widget.source.value = brain
    [preset] = [p for p in presets() if p.name == "8-coil MRI, 8x equispaced - DDS + TV-z"]
    widget.preset.value = preset.name
    assert widget.operator.value == "mri-multicoil" and widget.sampler.value == "dds"
    assert widget.prior.value == "diffusion" and widget.noise.value == preset.noise_std
    widget.forms["sampler"]["steps"].value = 2  # 2 steps: the step loop, at 16 x 233 x 197
    widget.device.value = "cpu"
    widget.start()
    name = "brain-1mm sample dds"
    qtbot.waitUntil(lambda: name in viewer.layers and widget.run_button.enabled, timeout=300_000)
    result = viewer.layers[name]
    np.testing.assert_allclose(result.affine.affine_matrix, brain.affine.affine_matrix)
    m = medrecon.simulate(brain.data, preset.operator, noise_std=preset.noise_std, seed=0)
    recipe = {**preset.recipe, "sampler": {**preset.recipe["sampler"], "steps": 2}}
    expected = medrecon.reconstruct(recipe, m, device="cpu").image.numpy()
    np.testing.assert_allclose(result.data, expected, rtol=1e-4, atol=1e-4)
    assert "PSNR" in widget.status.value
    viewer.window._qt_window.resize(1400, 900)  # the viewer with the widget, at the end
    shot = viewer.screenshot(str(tmp_path / "brain.png"), canvas_only=False)
    assert shot.shape[0] > 200 and float(shot[..., :3].std()) > 5 and (tmp_path / "brain.png").exists()


def test_the_widget_opens_on_a_preset_that_fits_not_the_first_components(viewer_with_widget):
    _, widget, _ = viewer_with_widget
    assert widget.preset.value == "8-coil MRI, 4x equispaced - DDS + TV-z"  # an image: MRI, diffusion
    recipe = widget.recipe()
    assert recipe["operator"] == {"name": "mri-multicoil"}  # 8 coils and 4x are its defaults
    assert widget.forms["operator"]["coils"].value == 8
    assert recipe["prior"]["name"] == "diffusion" and recipe["sampler"]["name"] == "dds"
    assert recipe["sampler"]["tv_z"] == 0.002 and widget.noise.value == 0.005


def test_recipes_round_trip_through_the_toml_the_cli_reads(viewer_with_widget, tmp_path):
    from medrecon import Recipe

    _, widget, _ = viewer_with_widget
    widget.preset.value = "limited-angle CT, 90 views over 0-90 degrees - ADMM-TV"
    saved = tmp_path / "ct.toml"
    widget.save_recipe(saved)
    assert Recipe.from_toml(saved).to_dict() == widget.recipe()
    assert widget.recipe()["operator"]["angle_range"] == [0.0, 90.0]
    (tmp_path / "cg.toml").write_text(
        '[operator]\nname = "mri-multicoil"\nacceleration = 6.0\n\n[sampler]\nname = "cg"\niterations = 7\n'
    )
    widget.load_recipe(tmp_path / "cg.toml")
    assert widget.preset.value == "(custom)" and widget.prior.value == "(none)"
    assert widget.recipe() == {
        "operator": {"name": "mri-multicoil", "acceleration": 6.0},
        "sampler": {"name": "cg", "iterations": 7},
    }
    bad = {
        "typo.toml": ('[sampler]\nname = "dds2"\n', "did you mean 'dds'"),
        "param.toml": ('[sampler]\nname = "cg"\niterationz = 3\n', "iterationz"),
        "value.toml": ('[sampler]\nname = "cg"\niterations = "many"\n', "iterations"),
        "broken.toml": ("[sampler\n", "not valid TOML"),
    }
    for name, (text, message) in bad.items():
        (tmp_path / name).write_text(text)
        widget.load_recipe(tmp_path / name)
        assert widget.status.value.startswith("recipe not loaded: ") and message in widget.status.value
        assert widget.recipe()["sampler"] == {"name": "cg", "iterations": 7}  # the form as it was


def test_bad_starts_leave_the_form_and_the_layers_as_they_were(viewer_with_widget, qtbot):
    """A preset whose prior is not installed and a layer of the wrong dimensionality: each is said
    in the status; no form change, no layer (a second start during a run: see the cost test)."""
    from medrecon.apps.presets import Preset

    viewer, widget, _ = viewer_with_widget
    missing = Preset(
        "needs a missing prior",
        {"name": "mri-multicoil"},
        0.01,
        {"prior": {"name": "nope"}, "sampler": {"name": "dds"}},
    )
    widget.presets[missing.name] = missing
    widget.preset.choices = [*widget.preset.choices, missing.name]
    before = widget.recipe()
    widget.preset.value = missing.name
    assert widget.status.value.startswith("preset not applied: ") and "'nope'" in widget.status.value
    assert widget.recipe() == before and widget.preset.value == "(custom)"

    widget.preset.value = "8-coil MRI, 4x equispaced - DDS + TV-z"
    widget.sampler.value = "cg"
    widget.prior.value = "(none)"
    widget.device.value = "cpu"
    widget.source.value = viewer.add_image(np.zeros((2, 3, 32, 32), np.float32), name="4d")
    count = len(viewer.layers)
    widget.start()
    qtbot.waitUntil(lambda: widget.run_button.enabled, timeout=30_000)
    assert widget.status.value.startswith("failed: ") and "(2, 3, 32, 32)" in widget.status.value
    assert len(viewer.layers) == count
