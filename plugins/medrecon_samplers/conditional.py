"""Samplers for conditional models (prior `conditional`): BCDM and Diff-Unfolding.

Both run the reverse diffusion with the model's posterior mean E[x0 | x_t, y] in place of an
unconditional Tweedie estimate: no guidance term, no network gradient. Each step is x0_hat =
model(x_t, t, y), then (`data_consistency`, the default) `cg_iterations` of CG on (A^H A + gamma I)
x = A^H y + gamma x0_hat from x0_hat, as in DDS, or for volumes with `tv_z` > 0 one warm-started
ADMM iteration with TV along z instead, then a DDIM step to t - 1 from the refined x0 (eta 0
deterministic, 1 ancestral). `result` = "refined" (default) returns the last refined x0,
"denoised" the network's last estimate before it (smoother: it has not fitted the noise). Where
they deviate from their papers:

- BCDM (Güngör, Bilecen, Çukur 2024, arXiv 2406.09768) derives the conditional score under
  Gaussian noise and trains an unrolled network per task; here the derivation is the model's
  Gaussian conditioning block (`medrecon.conditional`) and the network is trained per task by
  `medrecon train-conditional --method bcdm` (MRI 4-8x for the shipped `bcdm-mri`). The paper
  samples ancestrally with its full schedule and has no data-consistency step outside its network;
  the default here averages 3 samples of 2 steps, eta = 1, each estimate refined by CG.
- Diff-Unfolding (2025) unrolls physics and learned blocks with a 47 M parameter network trained
  once across operators; the shipped model is much smaller (CPU-trained), its physics blocks
  taking any linear operator. The paper takes the network's estimate as it is; the default here
  is one step, the estimate refined by CG held near it (gamma 0.3).

Unlike DDS, which steps with the network's own noise estimate, the DDIM step here takes its noise
direction from the refined x0 (eps = (x_t - sqrt(a_t) x0) / sqrt(1 - a_t)): the defaults were
tuned so. Without `data_consistency`, `gamma` and `result` have no effect.

Defaults were chosen on the validation slab (`python benchmarks/tune.py --case mri-4x --case
mri-8x --case ct-8view --conditional bcdm-mri,diff-unfolding --data-consistency`, 2 slices, and
for Diff-Unfolding also `--case ct-limited-90 --case sr-4x --case deblur-motion`; the grids are in
that script, which also runs the demo's DDS + TV-z on the same measurements).
BCDM (bcdm-mri after its third stage; MRI 4x / 8x): 3 samples of 2 steps with CG, 31.86 / 29.88
dB, against 31.05 / 29.51 without CG, 5 steps with CG 31.76 / 29.54, 10 steps 31.90 / 29.51; on
volumes with TV along z (`tv_z` 0.001, 10 steps, one sample) 32.72 / 30.09, where DDS + TV-z
reaches 32.01 / 29.82 on the same slices. After its fourth stage: the default 32.18 / 30.25; with
TV along z, among the runs that take clearly less time than DDS + TV-z (up to about 16 steps x
samples), one sample of 15 steps 33.16 / 30.49 (what `medrecon.apps.demo.TUNED` holds; 0.65x DDS's
time), of 10 steps 33.09 / 30.40, the mean of 2 samples of 8 steps 32.98 / 30.68 (0.85x DDS's
time; the same mean over 4x and 8x), of 4 x 4 32.88 / 30.44, 3 x 5 32.87 / 30.56, 5 x 3 32.76 /
30.36; at about DDS's time, one sample of 20 steps 33.01 / 30.27 (0.87x) and the mean of 2 of 10
steps 33.04 / 30.75 (0.07 dB more than 15 steps, 0.9-1.2x DDS's time by the per-step rates
measured); slower, the mean of 3 samples of 10 steps 33.33 / 31.08 (1.4-1.9x its time; `tv_z`
0.002: 33.25 / 31.05). Around 15 steps:
`tv_z` 0.0005 / 0.002 33.14 / 30.47 and 33.11 / 30.47, `rho` 0.003 / 0.03 32.81 / 30.25 and
33.22 / 30.42, `result = "denoised"` 32.74 / 30.33 (SSIM 0.876 / 0.866 against 0.847 / 0.834).
The fifth stage (shipped) kept these settings; it was measured on the test slab only (README).
Diff-Unfolding (diff-unfolding after its third stage): one step with CG held by gamma 0.3, MRI
4x / 8x / 8-view CT / 90-degree CT 29.14 / 27.58 / 22.78 / 18.62 dB, against 28.92 / 27.46 /
22.61 / 18.52 for one step without CG (the previous default); super-resolution (never seen in
training) and motion deblurring 26.20 / 32.25 against 26.21 / 32.08. More steps with gamma 0
score higher on MRI and CT (3 steps: 30.45 / 28.26 / 23.28) but fail on super-resolution (21.9 dB,
with or without CG) and, without gamma, on deblurring (26.5 dB: CG fits the noise through the
blur's small singular values), so they are not the default. On volumes (`tv_z` 0.002, gamma 0.03,
5 steps, for its training operators) MRI 30.57 / 28.07, CT 23.11, deblurring 32.40.
With CG the SSIM falls (BCDM 0.863 -> 0.795 at 4x: the last CG step fits the measurement noise);
`result = "denoised"` keeps it (BCDM 5 steps: 0.850) at 0.03 dB.
More steps with eta = 1 draw posterior samples, whose spread (`samples = K`) is the std map; with one
step the K results differ only by their starting noise.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Literal

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
    """The reverse diffusion of a conditional model (module docstring). `data_consistency` refines
    each posterior-mean estimate by `cg_iterations` of CG (`gamma` >= 0 holds it near the
    estimate); `tv_z` > 0 (volumes) makes that one warm-started ADMM iteration with TV along z
    (penalty `rho`; gamma, tv_z and rho in units of ||A||^2). `result` "refined" returns the last
    refined estimate, "denoised" the network's last estimate before its refinement."""

    requires = (LINEAR_OPERATOR, CONDITIONAL_PRIOR)
    #: network passes per step of the shipped models (one per learned block)
    nfe_per_step = int(UNROLLED_ARCHITECTURE["blocks"])
    #: the card `method` this sampler runs ("" any)
    method = ""

    def __init__(
        self,
        steps: int,
        samples: int,
        eta: float,
        tv_z: float,
        rho: float,
        cg_iterations: int,
        data_consistency: bool,
        gamma: float,
        result: Literal["refined", "denoised"],
    ):
        super().__init__(steps, samples, eta)
        check_parameters(
            self.method,
            tv_z=(tv_z, tv_z >= 0, ">= 0"),
            rho=(rho, rho > 0, "> 0"),
            cg_iterations=(cg_iterations, cg_iterations >= 1, ">= 1"),
            gamma=(gamma, gamma >= 0, ">= 0"),
            result=(result, result in ("refined", "denoised"), "'refined' or 'denoised'"),
        )
        self.tv_z, self.rho, self.cg_iterations = tv_z, rho, cg_iterations
        if tv_z and not data_consistency:
            raise InputError(
                f"{self.method}: tv_z > 0 is a data-consistency step (ADMM with TV along z): "
                "it needs data_consistency = true"
            )
        self.data_consistency, self.gamma, self.result = bool(data_consistency), gamma, result

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
            x0_hat = x0 = prior.predict_x0(x, t, condition)
            if self.data_consistency:
                x0 = refine(
                    op,
                    condition.aty,
                    x0_hat,
                    tv,
                    cg_iterations=self.cg_iterations,
                    gamma=self.gamma * norm2,
                    tv_z=self.tv_z * norm2,
                    rho=self.rho * norm2,
                )
            x = ddim_step(x0, noise_of(x, x0, a_t), a_t, a_prev, self.eta, z)
            yield Step(i, len(times), run.preview(x0))
        return run.result(
            x0_hat if self.result == "denoised" else x0,
            nfe=prior.network_passes * len(times) * self.samples,
            steps=len(times),
            model=prior.card.get("name"),
            model_method=model,
        )


class BCDM(ConditionalSampler):
    """Bayesian conditioned diffusion (Güngör, Bilecen, Çukur 2024): ancestral sampling (eta = 1)
    with a task-specific conditional model (prior `conditional`, weights 'bcdm-mri'). Defaults:
    the mean of 3 samples of 2 steps each, each network estimate refined by 5 CG iterations
    (18 network passes with the shipped 3-block model; the samples' spread is the std map)."""

    method = "bcdm"

    def __init__(
        self,
        steps: int = 2,
        samples: int = 3,
        eta: float = 1.0,
        tv_z: float = 0.0,
        rho: float = 0.01,
        cg_iterations: int = 5,
        data_consistency: bool = True,
        gamma: float = 0.0,
        result: Literal["refined", "denoised"] = "refined",
    ):
        super().__init__(steps, samples, eta, tv_z, rho, cg_iterations, data_consistency, gamma, result)


class DiffUnfolding(ConditionalSampler):
    """Diff-Unfolding (2025): DDIM steps with a conditional model trained once across operators
    (prior `conditional`, weights 'diff-unfolding'); any linear operator plugs into its physics
    blocks. Defaults: 1 step (the posterior mean; 3 network passes with the shipped model) refined
    by 5 CG iterations held near it by `gamma` = 0.3 ||A||^2 (safe on ill-conditioned and unseen
    operators); eta = 1 for runs of more steps (posterior samples)."""

    method = "diff-unfolding"

    def __init__(
        self,
        steps: int = 1,
        samples: int = 1,
        eta: float = 1.0,
        tv_z: float = 0.0,
        rho: float = 0.01,
        cg_iterations: int = 5,
        data_consistency: bool = True,
        gamma: float = 0.3,
        result: Literal["refined", "denoised"] = "refined",
    ):
        super().__init__(steps, samples, eta, tv_z, rho, cg_iterations, data_consistency, gamma, result)
