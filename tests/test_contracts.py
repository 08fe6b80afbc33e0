"""Component contracts: problems, pairing checks, progress and cancellation."""

from __future__ import annotations

import pytest
import torch

import medrecon
from tests.helpers import NeedsDiffusion, NeedsSVD, Ridge, Scale, StandardNormal


def test_problem_rejects_nan_and_inf_in_the_measurement():
    y = torch.ones(4, 4)
    y[1, 2] = float("nan")
    y[0, 0] = float("inf")
    with pytest.raises(medrecon.InputError, match=r"holds 2 NaN or Inf value\(s\)"):
        medrecon.Problem(Scale(), y, 0.1)


def test_problem_rejects_a_measurement_of_the_wrong_shape_or_kind():
    with pytest.raises(medrecon.InputError, match=r"shape \(4, 5\) does not match: expected \(4, 4\)"):
        medrecon.Problem(Scale(), torch.ones(4, 5), 0.1)
    with pytest.raises(medrecon.InputError, match=r"must be real \(torch.float32\), got torch.complex64"):
        medrecon.Problem(Scale(), torch.ones(4, 4, dtype=torch.complex64), 0.1)
    with pytest.raises(medrecon.InputError, match="noise_std must be a finite number >= 0"):
        medrecon.Problem(Scale(), torch.ones(4, 4), -1.0)


def test_a_sampler_needing_a_diffusion_prior_given_tv_like_prior_fails_in_one_sentence():
    problem = medrecon.Problem(Scale(), torch.ones(4, 4), 0.1)
    with pytest.raises(medrecon.IncompatibleError) as err:
        NeedsDiffusion().run(problem, Ridge())
    assert str(err.value) == (
        "sampler 'NeedsDiffusion' needs a diffusion prior, but was given a proximal prior (Ridge)."
    )


def test_an_svd_sampler_given_an_operator_without_one_fails_before_work():
    class NoSVD(Scale):
        def svd(self):
            return None

    problem = medrecon.Problem(NoSVD(), torch.ones(4, 4), 0.1)
    with pytest.raises(
        medrecon.IncompatibleError, match="needs an operator with an SVD, but operator NoSVD has no SVD"
    ):
        NeedsSVD().run(problem, StandardNormal())


def test_run_reports_every_step_and_returns_the_result():
    problem = medrecon.Problem(Scale(), torch.ones(4, 4), 0.1)
    steps = []
    result = NeedsDiffusion(steps=4).run(problem, StandardNormal(), seed=7, progress=steps.append)
    assert [s.index for s in steps] == [0, 1, 2, 3] and all(s.total == 4 for s in steps)
    assert result.info["nfe"] == 4 and result.info["seed"] == 7 and result.info["seconds"] >= 0


def test_cancel_stops_between_steps():
    problem = medrecon.Problem(Scale(), torch.ones(4, 4), 0.1)
    seen = []
    with pytest.raises(medrecon.Cancelled, match="after step 2 of 5"):
        NeedsDiffusion(steps=5).run(
            problem, StandardNormal(), progress=seen.append, cancel=lambda: len(seen) >= 2
        )
    assert len(seen) == 2


def test_tweedie_estimate_of_the_exact_standard_normal_prior():
    # For x0 ~ N(0, I), E[x0 | x_t] = sqrt(abar_t) x_t.
    prior = StandardNormal()
    x_t = torch.randn(3, 5)
    t = 4
    expected = prior.alphas_cumprod[t].sqrt() * x_t
    torch.testing.assert_close(prior.predict_x0(x_t, t), expected)


def test_simulate_is_reproducible_and_noise_has_the_stated_level():
    op = Scale((64, 64), c=1.0)
    x = torch.zeros(64, 64)
    y1, y2 = op.simulate(x, 0.5, seed=11), op.simulate(x, 0.5, seed=11)
    assert torch.equal(y1, y2) and not torch.equal(y1, op.simulate(x, 0.5, seed=12))
    assert abs(float(y1.std()) - 0.5) < 0.02


def test_complex_noise_is_circular_with_the_stated_level():
    noise = medrecon.contracts.gaussian_noise((200, 200), torch.complex64, 0.3, seed=0)
    assert noise.dtype == torch.complex64
    assert abs(float(noise.abs().pow(2).mean().sqrt()) - 0.3) < 0.005
    assert abs(float(noise.real.std()) - float(noise.imag.std())) < 0.005


def _undeclared_uses(source: str) -> list[str]:
    """Attributes a sampler's source reads on operators (`op`, `*_op`, `*.operator`) and priors
    (`prior`, `*_prior`) that no contract class declares."""
    import ast

    operators = [medrecon.Operator, medrecon.BlindOperator]
    priors = [
        medrecon.DiffusionPrior,
        medrecon.ProximalPrior,
        medrecon.GaussianPrior,
        medrecon.ConditionalPrior,
    ]

    def declared(classes, name):
        return any(
            name in vars(k) or name in getattr(k, "__annotations__", {}) for c in classes for k in c.__mro__
        )

    def owner(value) -> str | None:
        name = (
            value.id
            if isinstance(value, ast.Name)
            else value.attr
            if isinstance(value, ast.Attribute)
            else ""
        )
        if name in ("op", "operator") or name.endswith("_op"):
            return "operator"
        if name == "prior" or name.endswith("_prior"):
            return "prior"
        return None

    found = []
    for node in ast.walk(ast.parse(source)):
        kind = owner(node.value) if isinstance(node, ast.Attribute) else None
        if kind and not declared(operators if kind == "operator" else priors, node.attr):
            found.append(f"{node.lineno}: {kind}.{node.attr}")
    return found


def test_the_contracts_declare_everything_the_built_in_samplers_use():
    from pathlib import Path

    # (the CT plugin's fbp sampler calls its own operator class's fbp, not a contract's method)
    sources = sorted((Path(__file__).parent.parent / "plugins" / "medrecon_samplers").glob("*.py"))
    used = {f"{p.name}:{hit}" for p in sources for hit in _undeclared_uses(p.read_text())}
    assert not used, f"used but not declared by a contract: {sorted(used)}"
    # the check sees a use the contracts do not declare
    breach = "def step(problem, prior, op):\n    op.fbp(problem.y)\n    return prior.network.blocks\n"
    assert _undeclared_uses(breach) == ["2: operator.fbp", "3: prior.network"]
