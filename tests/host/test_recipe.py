"""Recipes: validated against the factories' signatures before any work starts."""

from __future__ import annotations

from typing import Literal

import pytest

import medrecon
from medrecon import ComponentRecipe, Recipe, RecipeError


def test_a_toml_recipe_is_read_and_its_values_coerced(tmp_path, host):
    path = tmp_path / "r.toml"
    path.write_text(
        '[operator]\nname = "mri-multicoil"\nacceleration = 8\n\n[sampler]\nname = "cg"\niterations = 5\n'
    )
    recipe = Recipe.from_toml(path).validate(host)
    assert recipe.operator.params == {"acceleration": 8.0}
    assert isinstance(recipe.operator.params["acceleration"], float)  # int accepted where float is declared
    assert recipe.sampler.params == {"iterations": 5}


@pytest.mark.parametrize(
    ("data", "messages"),
    [
        (
            {"sampler": {"name": "cgg"}},
            [
                "no sampler named 'cgg'",
                "did you mean 'cg'",
                "installed samplers: {samplers}",
            ],
        ),
        (
            {"sampler": {"name": "cg", "iteration": 5}},
            ["sampler 'cg' has no parameter 'iteration'", "did you mean 'iterations'", "'tikhonov'"],
        ),
        (
            {"sampler": {"name": "cg", "iterations": "many"}},
            ["parameter 'iterations' of sampler 'cg' expects int, got 'many'"],
        ),
        (
            {"sampler": {"name": "cg", "iterations": 2.5}},
            ["expects int, got 2.5"],
        ),
        (
            {"operator": {"name": "mri-multicoil", "complex_image": "yes"}},
            ["parameter 'complex_image' of operator 'mri-multicoil' expects bool"],
        ),
        ({"samplr": {"name": "cg"}}, ["unknown recipe section [samplr]", "did you mean 'sampler'"]),
        ({"sampler": {"iterations": 3}}, ['[sampler] needs name = "..."']),
    ],
)
def test_bad_recipes_get_errors_listing_what_is_valid(host, data, messages):
    from medrecon.errors import listing

    with pytest.raises(RecipeError) as err:
        Recipe.from_dict(data).validate(host)
    for message in messages:
        assert message.format(samplers=listing(host.components["sampler"])) in str(err.value)


def test_recipe_file_that_is_not_toml(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[sampler\nname = cg")
    with pytest.raises(RecipeError, match="is not valid TOML"):
        Recipe.from_toml(path)


def test_recipe_round_trips_through_a_dict():
    data = {"operator": {"name": "mri-multicoil", "acceleration": 8}, "sampler": {"name": "cg"}}
    assert Recipe.from_dict(data).to_dict() == data


def test_parameters_come_from_the_factory_signature(host):
    params = {p.name: p for p in host.get("sampler", "cg").spec.parameters}
    assert params["iterations"].type_name == "int" and params["iterations"].default == 30
    op_params = {p.name: p for p in host.get("operator", "mri-multicoil").spec.parameters}
    assert op_params["coil_maps"].is_array and op_params["coil_maps"].type_name == "array | None"
    assert op_params["shape"].type_name == "tuple[int, ...] | None"


def test_literal_and_tuple_parameters_are_checked():
    def factory(window: Literal["ramp", "hann"] = "ramp", angle_range: tuple[float, float] = (0.0, 180.0)):
        return None

    ok = medrecon.host.params.coerce_params(factory, {"window": "hann", "angle_range": [0, 90]}, "x")
    assert ok == {"window": "hann", "angle_range": (0.0, 90.0)}
    with pytest.raises(RecipeError, match="choose one of 'ramp', 'hann'"):
        medrecon.host.params.coerce_params(factory, {"window": "cosine"}, "x")
    with pytest.raises(RecipeError, match="needs 2 items, got 3"):
        medrecon.host.params.coerce_params(factory, {"angle_range": [0, 90, 180]}, "x")


def test_a_factory_whose_type_hints_cannot_be_resolved_is_rejected_at_registration():
    def factory(kernel: UndefinedKernelType = None):  # noqa: F821
        return None

    with pytest.raises(TypeError, match="cannot resolve the type hints"):
        medrecon.SamplerSpec(name="bad-hints", factory=factory, summary="x")


def test_overrides_switch_components_and_merge_parameters_as_the_cli_does():
    from medrecon.host.recipe import parse_overrides

    rec = Recipe.from_dict(
        {"sampler": {"name": "cg", "iterations": 5}, "prior": {"name": "tv", "weight": 0.1}}
    )
    same = rec.override(parse_overrides(["sampler.iterations=9", "weight=0.2"], "prior"))
    assert same.sampler.params == {"iterations": 9} and same.prior.params == {"weight": 0.2}
    switched = rec.override({"sampler": {"steps": 20}}, sampler="dds")  # cg's iterations do not apply
    assert switched.sampler == ComponentRecipe("dds", {"steps": 20}) and switched.prior == rec.prior
    assert rec.sampler.params == {"iterations": 5}  # the recipe itself is unchanged
    with pytest.raises(RecipeError, match="unknown recipe section 'samplr'.*did you mean 'sampler'"):
        rec.override({"samplr": {"steps": 1}})
    with pytest.raises(RecipeError, match="parameters given for \\[operator\\] but no operator is named"):
        rec.override({"operator": {"acceleration": 4}})
    with pytest.raises(RecipeError, match="'steps' needs its section: operator.steps=..."):
        parse_overrides(["steps=4"])
    with pytest.raises(RecipeError, match="parameter 'steps' must look like KEY=VALUE"):
        parse_overrides(["steps"])
    assert rec.without("prior") == Recipe(sampler=rec.sampler)


def test_a_run_looks_each_component_up_once(mri_measurement, host, monkeypatch):
    lookups = []
    get = host.get
    monkeypatch.setattr(host, "get", lambda kind, name: lookups.append((kind, name)) or get(kind, name))
    recipe = {"prior": {"name": "tv", "weight": 0.01}, "sampler": {"name": "admm-tv", "iterations": 2}}
    result = medrecon.reconstruct(recipe, mri_measurement, host=host, device="cpu")
    assert sorted(lookups) == [("operator", "mri-multicoil"), ("prior", "tv"), ("sampler", "admm-tv")]
    assert result.info["versions"]["sampler:admm-tv"].startswith("medrecon")
