"""The plugin host: registration, conflicts, broken plugins, disabling, entry points."""

from __future__ import annotations

import logging

import pytest

import medrecon
from medrecon.host.plugin import PluginHost
from tests.helpers import Scale, ToyPlugin


def test_registered_plugin_components_are_listed_with_their_provider():
    host = PluginHost()
    host.register(ToyPlugin(), name="toy", distribution="toy-dist", version="0.1")
    comp = host.get("operator", "scale")
    assert comp.spec.factory is Scale
    assert (comp.provider.plugin, comp.provider.distribution, comp.provider.version) == (
        "toy",
        "toy-dist",
        "0.1",
    )
    assert {c.name for c in host.all_components()} == {
        "scale",
        "ridge",
        "std-normal",
        "needs-diffusion",
        "needs-svd",
    }


def test_unknown_component_lists_valid_names_with_a_hint(host):
    with pytest.raises(medrecon.PluginError) as err:
        host.get("operator", "mri-multicoill")
    assert "did you mean 'mri-multicoil'" in str(err.value)
    installed = "'blind-deconv', 'ct-parallel', 'downsample', 'inpainting', 'mri-multicoil'"
    assert f"installed operators: {installed}" in str(err.value)


def test_two_plugins_claiming_one_name_is_an_error_naming_both():
    host = PluginHost()
    host.register(ToyPlugin(), name="first", distribution="dist-a", version="1")
    host.register(ToyPlugin(), name="second", distribution="dist-b", version="2")
    with pytest.raises(medrecon.PluginError) as err:
        host.get("operator", "scale")
    msg = str(err.value)
    assert "'scale'" in msg and "dist-a" in msg and "dist-b" in msg and "first" in msg and "second" in msg


class RaisingPlugin:
    @medrecon.hookimpl
    def medrecon_operators(self):
        raise RuntimeError("coil database not found")

    @medrecon.hookimpl
    def medrecon_samplers(self):
        yield medrecon.SamplerSpec(name="half-there", factory=dict, summary="never listed")


def test_a_plugin_whose_hook_raises_is_skipped_whole_and_listed_as_failed(caplog):
    host = PluginHost()
    host.register(ToyPlugin(), name="toy")
    host.register(RaisingPlugin(), name="raiser", distribution="raiser-dist")
    with caplog.at_level(logging.WARNING):
        names = {c.name for c in host.all_components()}
    assert "scale" in names and "half-there" not in names
    [failed] = host.failed
    assert failed.plugin == "raiser" and failed.distribution == "raiser-dist"
    assert "coil database not found" in failed.error and "medrecon_operators" in failed.error
    assert "raiser" in caplog.text


class WrongRecords:
    @medrecon.hookimpl
    def medrecon_priors(self):
        yield medrecon.OperatorSpec(name="oops", factory=Scale, summary="an operator in the prior hook")


def test_a_hook_yielding_the_wrong_record_type_fails_that_plugin():
    host = PluginHost()
    host.register(WrongRecords(), name="wrong")
    assert host.components["prior"] == {}
    assert "expected PriorSpec records, got OperatorSpec" in host.failed[0].error


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Bad Name", "factory": Scale, "summary": "x"}, "lower-case words joined by '-'"),
        ({"name": "ok", "factory": 3, "summary": "x"}, "factory must be callable"),
        ({"name": "ok", "factory": Scale, "summary": " "}, "summary must be a non-empty string"),
    ],
)
def test_spec_records_validate_themselves(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        medrecon.OperatorSpec(**kwargs)


def test_spec_records_are_frozen():
    spec = medrecon.OperatorSpec(name="scale", factory=Scale, summary="y = c x")
    with pytest.raises(AttributeError):
        spec.name = "other"


def test_builtins_are_found_through_the_medrecon_entry_points():
    host = PluginHost.from_entry_points()
    comp = host.get("operator", "mri-multicoil")
    assert comp.provider.distribution == "medrecon" and comp.provider.builtin
    assert comp.provider.plugin == "mri"
    assert {"adjoint", "cg"} <= set(host.components["sampler"])


def test_disabled_plugins_are_not_loaded(monkeypatch):
    monkeypatch.setenv("MEDRECON_DISABLE_PLUGINS", "mri, other")
    host = PluginHost.from_entry_points()
    assert "mri-multicoil" not in host.components["operator"]
    assert "cg" in host.components["sampler"]
    with pytest.raises(medrecon.PluginError, match="plugins disabled by MEDRECON_DISABLE_PLUGINS: 'mri'"):
        host.get("operator", "mri-multicoil")
    assert PluginHost.from_entry_points(disabled=[]).get("operator", "mri-multicoil")


class ThirdPartyTraining:
    """A third party's training task (its own operator family) and dataset, by the optional hooks."""

    @medrecon.hookimpl
    def medrecon_training_tasks(self):
        def holes(missing: tuple[float, float] = (0.3, 0.6)):
            lo, hi = missing
            return medrecon.TrainingTask(
                "holes",
                lambda u: {"name": "inpainting", "missing": round(lo + (hi - lo) * u(), 2)},
                {"operator": "inpainting", "missing": [lo, hi]},
                validation={"name": "inpainting", "missing": 0.5},
            )

        yield medrecon.TaskSpec(name="holes", factory=holes, summary="random missing pixels")
        yield medrecon.TaskSpec(name="broken", factory=lambda: "not a task", summary="gives a string")

    @medrecon.hookimpl
    def medrecon_datasets(self):
        def dots(count: int = 8, seed: int = 0, side: int = 8):
            import torch

            images = torch.full((count, 1, side, side), -1.0)
            return medrecon.TrainingImages(images, {"kind": "dots"}, {"data_range": [-1.0, 1.0]})

        yield medrecon.DatasetSpec(name="dots", factory=dots, summary="blank images")


def test_training_tasks_and_datasets_come_from_plugins_like_components(tmp_path):
    """The core's training commands name no operator: a plugin's task is drawn from with its
    options checked against the factory, a bad record is refused, a dataset trains a prior."""
    from medrecon.apps.conditional_training import build_tasks, method_tasks
    from medrecon.apps.training import train_dataset_prior
    from tests.helpers import TINY_UNET, builtin_host

    host = builtin_host()
    host.register(ThirdPartyTraining(), name="third", distribution="third-dist", version="1.0")
    assert {"holes", "mri", "ct-sparse", "ct-limited", "blur"} <= set(host.components["task"])
    assert host.get("task", "holes").provider.distribution == "third-dist"
    [task] = build_tasks(["holes"], {"holes": {"missing": [0.2, 0.25]}}, host=host)
    recipe = task.draw(lambda: 0.5)
    assert recipe == {"name": "inpainting", "missing": 0.23} and task.ranges["missing"] == [0.2, 0.25]
    assert method_tasks("diff-unfolding", host) == sorted(host.components["task"])
    with pytest.raises(medrecon.InputError, match="expects tuple"):
        build_tasks(["holes"], {"holes": {"missing": "many"}}, host=host)
    with pytest.raises(medrecon.InputError, match="not trained on"):
        build_tasks(["holes"], {"mri": {"acceleration": [4, 6]}}, host=host)
    with pytest.raises(medrecon.InputError, match="not a medrecon.TrainingTask"):
        build_tasks(["broken"], host=host)
    with pytest.raises(medrecon.InputError, match="no task named 'hole'"):
        build_tasks(["hole"], host=host)
    report = train_dataset_prior(
        tmp_path / "dots",
        "dots",
        count=10,
        dataset_options={"side": 8},
        host=host,
        steps=1,
        batch_size=2,
        checkpoint_every=1,
        architecture={"class": "DiffusionModelUNet", **TINY_UNET},
    )
    import json

    data = json.loads(report.card.read_text())["training"]["data"]
    assert data == {"kind": "dots", "dataset": "dots", "train_images": 9, "validation_images": 1}
