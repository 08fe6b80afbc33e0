"""Each diffusion sampler's loop keeps its run to itself: nothing of a run lands on the sampler, so
one configured instance gives the same result however its runs are interleaved."""

from __future__ import annotations

import copy

import pytest
import torch

import medrecon
from medrecon.contracts import drive
from medrecon_priors import Gaussian
from medrecon_samplers import CCDF, DDS, DPS, MCG, MMPS, DiffusionMBIR, PiGDM

SAMPLERS = {
    "dps": DPS(steps=6),
    "dps-gaussian": DPS(steps=6, rule="gaussian", alpha=0.01),
    "pigdm": PiGDM(steps=6),
    "mmps": MMPS(steps=6, cg_iterations=3),
    "mcg": MCG(steps=6),
    "dds-tv-z": DDS(steps=6, tv_z=0.002, gamma=1.0),
    "ccdf": CCDF(steps=4),
    "diffusion-mbir": DiffusionMBIR(steps=6),
    "diffusion-mbir-paper": DiffusionMBIR(steps=6, form="paper"),
}


@pytest.fixture(scope="module")
def ct_problem():
    from medrecon.samples import phantom_volume
    from tests.helpers import builtin_host

    host = builtin_host()
    m = medrecon.simulate(
        phantom_volume((3, 24, 24)), {"name": "ct-parallel", "views": 8}, noise_std=0.05, host=host
    )
    op = medrecon.build_operator(m.operator, arrays=m.arrays, host=host)
    return medrecon.Problem(op, torch.from_numpy(m.y), 0.05)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_a_run_leaves_the_sampler_as_configured_and_interleaved_runs_agree(name, ct_problem):
    sampler = SAMPLERS[name]
    prior = Gaussian(correlation=1.0, variance=0.1, mean=0.2)
    before = copy.deepcopy(vars(sampler))
    alone = drive(sampler.iterate(ct_problem, prior, seed=1)).image
    assert vars(sampler).keys() == before.keys(), "a run added attributes to the sampler"
    for key, value in before.items():
        assert repr(vars(sampler)[key]) == repr(value), f"a run changed the sampler's {key}"
    # two runs of the one instance, stepped in turn: each must be what it is alone
    first, second = sampler.iterate(ct_problem, prior, seed=1), sampler.iterate(ct_problem, prior, seed=2)
    results = {}
    while len(results) < 2:
        for label, run in (("first", first), ("second", second)):
            if label in results:
                continue
            try:
                next(run)
            except StopIteration as stop:
                results[label] = stop.value.image
    torch.testing.assert_close(results["first"], alone, rtol=0, atol=0)
    other = drive(sampler.iterate(ct_problem, prior, seed=2)).image
    torch.testing.assert_close(results["second"], other, rtol=0, atol=0)
    assert not torch.equal(results["first"], results["second"])  # the seeds do matter
