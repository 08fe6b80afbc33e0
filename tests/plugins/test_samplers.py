"""Classical samplers: CG-SENSE beats zero-filling; progress and pairing checks."""

from __future__ import annotations

import pytest
import torch

import medrecon
from medrecon.metrics import psnr
from medrecon_samplers import AdjointSampler, CGSampler
from tests.helpers import Ridge


def _problem(m: medrecon.Measurement, host) -> medrecon.Problem:
    op = medrecon.build_operator(m.operator, arrays=m.arrays, host=host)
    return medrecon.Problem(op, torch.from_numpy(m.y), m.noise_std)


def test_cg_sense_beats_zero_filling_by_a_wide_margin(mri_measurement, phantom, host):
    problem = _problem(mri_measurement, host)
    zero_filled = AdjointSampler().run(problem).image.numpy()
    cg = CGSampler(iterations=30).run(problem).image.numpy()
    assert psnr(phantom, cg) > psnr(phantom, zero_filled) + 5.0


def test_cg_reports_each_iteration_and_stops_at_tolerance(mri_measurement, host):
    problem = _problem(mri_measurement, host)
    steps = []
    result = CGSampler(iterations=200, tol=1e-3).run(problem, progress=steps.append)
    assert 0 < len(steps) < 200 and result.info["cg_iterations"] == len(steps)
    assert all(s.total == 200 for s in steps) and steps[-1].estimate is not None


def test_tikhonov_shrinks_the_solution(mri_measurement, host):
    problem = _problem(mri_measurement, host)
    plain = CGSampler(iterations=20).run(problem).image
    damped = CGSampler(iterations=20, tikhonov=1.0).run(problem).image
    assert damped.norm() < plain.norm()


def test_cg_given_a_prior_says_it_uses_none(mri_measurement, host):
    problem = _problem(mri_measurement, host)
    with pytest.raises(
        medrecon.IncompatibleError, match="sampler 'CGSampler' needs no prior, but was given a proximal prior"
    ):
        CGSampler().run(problem, Ridge())


def test_bad_sampler_parameters_are_rejected():
    with pytest.raises(medrecon.InputError, match="iterations must be >= 1, got 0"):
        CGSampler(iterations=0)
