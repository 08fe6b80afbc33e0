"""Samplers for conditional models (prior `conditional`): BCDM and Diff-Unfolding.

Both run the reverse diffusion with the model's posterior mean E[x0 | x_t, y] in place of an
unconditional Tweedie estimate: no guidance term, no network gradient. Each step is x0 =
model(x_t, t, y), optionally one ADMM iteration with TV along z on it (volumes, as in DDS), then a
DDIM step to t - 1 (eta 0 deterministic, 1 ancestral). Where they deviate from their papers:

- BCDM (Güngör, Bilecen, Çukur 2024, arXiv 2406.09768) derives the conditional score under
  Gaussian noise and trains an unrolled network per task; here the derivation is the model's
  Gaussian conditioning block (`medrecon.conditional`) and the network is trained per task by
  `medrecon train-conditional --method bcdm` (MRI 4-8x for the shipped `bcdm-mri`). The paper
  samples ancestrally with its full schedule; the default here averages 3 samples of 2 steps, eta = 1.
- Diff-Unfolding (2025) unrolls physics and learned blocks with a 47 M parameter network trained
  once across operators; the shipped model is much smaller (CPU-trained), its physics blocks
  taking any linear operator. Its default is one step: the model's posterior mean from x_T.

Defaults were chosen on the validation slab (`python benchmarks/tune.py --case mri-4x --case mri-8x
--slices 1 --conditional bcdm-mri,diff-unfolding`, steps 1/5/10/20 x eta 0/1, and for BCDM 2 x 3,
3 x 2 and 5 x 2 steps x samples averaged). BCDM (bcdm-mri after its third stage): the mean of 3
samples of 2 steps, eta 1, best on average (MRI 4x / 8x: 30.95 / 29.57 dB; 5 steps, one sample
30.78 / 29.17; 20 steps 31.10 / 29.07; 1 step 30.65 / 29.34; eta 0 lower at every count above 1),
in 1.2-1.3 times the time of 5 steps. Diff-Unfolding: 1 step (MRI 4x 28.14 dB, 10 steps 27.58 with
eta 1, 27.16 with eta 0; MRI 8x 26.69, 5 steps 25.99; 8-view CT 22.79, 10 steps with eta 1 22.81;
measured on its first stage).
More steps with eta = 1 draw posterior samples, whose spread (`samples = K`) is the std map; with one
step the K results differ only by their starting noise.
"""

from __future__ import annotations

from collections.abc import Generator

from medrecon import (
    CONDITIONAL_PRIOR,
    LINEAR_OPERATOR,
    ConditionalPrior,
    InputError,
    Problem,
    Reconstruction,
    Step,
)
from medrecon.conditional import UNROLLED_ARCHITECTURE
from medrecon.numerics import TVSplitState, ddim_step, noise_of
from medrecon_samplers.decomposed import refine
from medrecon_samplers.diffusion_steps import DiffusionSampler, begin_run, check_parameters


class ConditionalSampler(DiffusionSampler):
    """The reverse diffusion of a conditional model (module docstring). `tv_z` > 0 (volumes) adds
    one warm-started ADMM iteration with TV along z to each posterior-mean estimate (`cg_iterations`
    of CG inside, penalty `rho`, both weights in units of ||A||^2)."""

    requires = (LINEAR_OPERATOR, CONDITIONAL_PRIOR)
    #: network passes per step of the shipped models (one per learned block)
    nfe_per_step = int(UNROLLED_ARCHITECTURE["blocks"])
    #: the card `method` this sampler runs ("" any)
    method = ""

    def __init__(self, steps: int, samples: int, eta: float, tv_z: float, rho: float, cg_iterations: int):
        super().__init__(steps, samples, eta)
        check_parameters(
            self.method,
            tv_z=(tv_z, tv_z >= 0, ">= 0"),
            rho=(rho, rho > 0, "> 0"),
            cg_iterations=(cg_iterations, cg_iterations >= 1, ">= 1"),
        )
        self.tv_z, self.rho, self.cg_iterations = tv_z, rho, cg_iterations

    def iterate(
        self, problem: Problem, prior: ConditionalPrior, *, seed: int = 0
    ) -> Generator[Step, None, Reconstruction]:
        model = prior.card.get("method")
        if self.method and model and model != self.method:
            raise InputError(
                f"sampler '{self.method}' runs {self.method} models, but weights "
                f"{prior.card.get('name')!r} are a {model} model: use sampler '{model}'"
            )
        if problem.operator.domain_dtype.is_complex and not prior.complex_parts:
            raise InputError(
                f"conditional model {prior.card.get('name')!r} was trained on real images and this "
                "problem's image is complex: reconstruct with complex_image = false (magnitude-like "
                "data), or use prior 'diffusion' (brain-1mm takes complex images)"
            )
        if self.tv_z and len(problem.operator.domain_shape) != 3:
            raise InputError(f"{self.method} with tv_z needs a volume (D, H, W): TV along z couples slices")
        run = begin_run(problem, prior, self.samples, seed)
        condition = prior.condition(run.problem)
        op, norm2 = run.problem.operator, condition.norm2
        tv = TVSplitState()
        times = self.times(prior)
        x = run.normal()
        for i, (t, a_t, a_prev) in enumerate(run.schedule(times)):
            z = run.normal()
            x0 = prior.predict_x0(x, t, condition)
            if self.tv_z:
                x0 = refine(
                    op,
                    condition.aty,
                    x0,
                    tv,
                    cg_iterations=self.cg_iterations,
                    gamma=0.0,
                    tv_z=self.tv_z * norm2,
                    rho=self.rho * norm2,
                )
            x = ddim_step(x0, noise_of(x, x0, a_t), a_t, a_prev, self.eta, z)
            yield Step(i, len(times), run.preview(x0))
        return run.result(
            x0,
            nfe=prior.network_passes * len(times) * self.samples,
            steps=len(times),
            model=prior.card.get("name"),
            model_method=model,
        )


class BCDM(ConditionalSampler):
    """Bayesian conditioned diffusion (Güngör, Bilecen, Çukur 2024): ancestral sampling (eta = 1)
    with a task-specific conditional model (prior `conditional`, weights 'bcdm-mri'). Defaults:
    the mean of 3 samples of 2 steps each (18 network passes with the shipped 3-block model; their
    spread is the std map)."""

    method = "bcdm"

    def __init__(
        self,
        steps: int = 2,
        samples: int = 3,
        eta: float = 1.0,
        tv_z: float = 0.0,
        rho: float = 0.01,
        cg_iterations: int = 5,
    ):
        super().__init__(steps, samples, eta, tv_z, rho, cg_iterations)


class DiffUnfolding(ConditionalSampler):
    """Diff-Unfolding (2025): DDIM steps with a conditional model trained once across operators
    (prior `conditional`, weights 'diff-unfolding'); any linear operator plugs into its physics
    blocks. Defaults: 1 step (the posterior mean; 3 network passes with the shipped model), eta = 1
    for runs of more steps (posterior samples)."""

    method = "diff-unfolding"

    def __init__(
        self,
        steps: int = 1,
        samples: int = 1,
        eta: float = 1.0,
        tv_z: float = 0.0,
        rho: float = 0.01,
        cg_iterations: int = 5,
    ):
        super().__init__(steps, samples, eta, tv_z, rho, cg_iterations)
