"""Samplers with a Gaussian approximation of the likelihood p(y | x_t): PiGDM and MMPS.

Both approximate p(y | x_t) by N(A x0_hat, s^2 I + A V A^H) for a covariance V of x0 given x_t, whose
score J^T A^H (s^2 I + A V A^H)^-1 (y - A x0_hat) moves x0_hat to x0_hat + (1 - a_t) / sqrt(a_t) *
score (Tweedie's formula with the posterior score). They differ in V.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import Literal

from medrecon import DiffusionPrior, InputError, Problem, Reconstruction, Step
from medrecon.numerics import ddim_step, noise_of
from medrecon_samplers.diffusion_steps import (
    DiffusionSampler,
    Tweedie,
    begin_run,
    check_parameters,
    measurement_solve,
    posterior_step,
)

log = logging.getLogger(__name__)


def check_cg(sampler: str, cg_iterations: int, cg_tolerance: float) -> None:
    check_parameters(
        sampler,
        cg_iterations=(cg_iterations, cg_iterations >= 1, ">= 1"),
        cg_tolerance=(cg_tolerance, 0 <= cg_tolerance < 1, "in [0, 1)"),
    )


class PiGDM(DiffusionSampler):
    """PiGDM (Song, Vahdat, Mardani, Kautz, ICLR 2023): Cov(x0 | x_t) ~ r_t^2 I with r_t^2 = 1 - a_t,
    so p(y | x_t) ~ N(A x0_hat, r_t^2 A A^H + s^2 I) (their eq. 7-8 for noisy measurements), and the
    guidance J^T A^H (r_t^2 A A^H + s^2 I)^-1 (y - A x0_hat) applied in a DDIM update with eta.
    `solver`: "exact" uses the operator's exact solve (diagonal spectrum or SVD, e.g. a periodic
    blur), "cg" uses `cg_iterations` of CG, "auto" the exact solve where the operator has one. An
    exact solve asked of an operator without one falls back to CG and says so in the log and in
    info["pigdm_solver"].

    `weight` says how the guidance g = J^T A^H (r_t^2 A A^H + s^2 I)^-1 (y - A x0_hat) enters:
    - "published" (default): added to the DDIM step from the network's x0_hat with the weight
      sqrt(a_{t-1} a_t) (1 - a_t), as the authors' public implementation does (NVlabs RED-diff,
      algos/pgdm.py, `awd`: sqrt(a_{t-1} a_t) on J^T A^+ (y - A x0_hat), whose noiseless limit our g
      reaches times r_t^2). The guidance fades where a_t is small, where a trained network's Jacobian
      is least reliable.
    - "tweedie": x0_hat + (1 - a_t) / sqrt(a_t) g, Tweedie's formula with the posterior score, exact for
      a Gaussian prior (the oracle's case); with a trained prior the factor 1 / sqrt(a_t) amplifies
      the network's Jacobian errors at high noise and the run can diverge (measured: NaN at step 7 of
      100 on 8-coil MRI and on inpainting with brain-axial).
    Defaults: 100 steps and eta = 1.0, the paper's noisy-restoration setting."""

    def __init__(
        self,
        steps: int = 100,
        samples: int = 1,
        eta: float = 1.0,
        cg_iterations: int = 10,
        solver: Literal["auto", "exact", "cg"] = "auto",
        weight: Literal["published", "tweedie"] = "published",
        grad_chunk: int = 0,
    ):
        super().__init__(steps, samples, eta)
        check_cg("pigdm", cg_iterations, 0.0)
        if solver not in ("auto", "exact", "cg"):
            raise InputError(f"solver must be auto, exact or cg, got {solver!r}")
        if weight not in ("published", "tweedie"):
            raise InputError(f"weight must be 'published' or 'tweedie', got {weight!r}")
        self.cg_iterations, self.solver, self.weight = cg_iterations, solver, weight
        self.grad_chunk = grad_chunk

    def choose_solver(self, problem: Problem) -> str:
        """ "exact" where asked for (or "auto") and the operator has the solve, else "cg"."""
        op = problem.operator
        exact = self.solver != "cg" and op.solve_range_system(problem.y, 1.0, 1.0) is not None
        if exact:
            return "exact"
        if self.solver == "exact":
            log.warning("pigdm: %s has no exact solve of (r^2 A A^H + s^2 I); using CG", type(op).__name__)
            return "cg (no exact solve for this operator)"
        return "cg"

    def iterate(
        self, problem: Problem, prior: DiffusionPrior, *, seed: int = 0
    ) -> Generator[Step, None, Reconstruction]:
        run = begin_run(problem, prior, self.samples, seed)
        op, y, s2 = run.problem.operator, run.problem.y, run.problem.noise_std**2
        solver = self.choose_solver(run.problem)
        times = self.times(prior)
        x = run.normal()
        for i, (t, a_t, a_prev) in enumerate(run.schedule(times)):
            z = run.normal()
            # denoising step
            tweedie = Tweedie(run, x, t, self.grad_chunk)
            x0 = tweedie.x0
            # pseudo-inverse guidance: g = J^T A^H (r_t^2 A A^H + s^2 I)^-1 (y - A x0_hat)
            residual = y - op(x0)
            if solver == "exact":
                v = op.solve_range_system(residual, float(1 - a_t), s2)
            else:
                v = measurement_solve(
                    run.problem, lambda u, a_t=a_t: (1 - a_t) * u, residual, self.cg_iterations
                )
            guidance = tweedie.vjp(op.adjoint(v))
            # sampling step: DDIM with the guidance, weighted as published or by Tweedie's formula
            if self.weight == "tweedie":
                x, x0 = posterior_step(x, x0, guidance, a_t, a_prev, self.eta, z, prior, False)
            else:
                x_prev = ddim_step(x0, noise_of(x, x0, a_t), a_t, a_prev, self.eta, z)
                x = (x_prev + (a_prev * a_t).sqrt() * (1 - a_t) * guidance).detach()
            yield Step(i, len(times), run.preview(x0))
        return run.result(
            x0, nfe=self.nfe(len(times)), steps=len(times), pigdm_solver=solver, pigdm_weight=self.weight
        )


class MMPS(DiffusionSampler):
    """Moment-matching posterior sampling (Rozet, Andry, Lanusse, Louppe, NeurIPS 2024): Cov(x0 | x_t)
    from Tweedie's second-order formula, (1 - a_t) / sqrt(a_t) * d x0_hat / d x_t, applied matrix-free
    with vector-Jacobian products inside CG. For a Gaussian prior this is the exact conditional
    denoiser E[x0 | x_t, y] (the "CGDM" case), so with enough steps the samples follow the exact
    posterior. With a trained prior the Jacobian is only approximately symmetric and positive (CG
    stops a chain at negative curvature) and at high noise its errors are amplified by
    1 / sqrt(a_t); `clip` (default on) clamps each corrected x0 to the prior's range widened by a
    quarter, as the DPS reference clamps x0_hat (measured, brain-axial, 70% missing pixels: -31.9 dB
    without at 100 steps, 25.6 dB with at 30). A Gaussian prior has no range: nothing is clamped.
    `cg_iterations` bounds the CG solve (`cg_tolerance` > 0 also stops it once the relative residual
    is that small). Defaults: 100 steps, ancestral updates (eta = 1) and 30 CG iterations, six times
    the paper's 5: on the Gaussian oracle (benchmarks/gaussian_oracle.py, the seed's CT texton,
    blur std 2 px, 200 samples) the centred mean error is 2.1% at 20 iterations, 1.7% at 30 and
    1.6% at 40 (sigma 0.01; 0.05: 1.8%, 1.6%, 1.5%), against 1.2% for the converged solve (CGDM)
    and for exact draws: the 2% target needs 30. Each CG iteration costs one vector-Jacobian
    product: `cg_iterations = 5` is the paper's cheaper setting."""

    def __init__(
        self,
        steps: int = 100,
        samples: int = 1,
        eta: float = 1.0,
        cg_iterations: int = 30,
        clip: bool = True,
        grad_chunk: int = 0,
        cg_tolerance: float = 0.0,
    ):
        super().__init__(steps, samples, eta)
        check_cg("mmps", cg_iterations, cg_tolerance)
        self.cg_iterations, self.cg_tolerance = cg_iterations, cg_tolerance
        self.grad_chunk = grad_chunk
        self.clip = clip

    def iterate(
        self, problem: Problem, prior: DiffusionPrior, *, seed: int = 0
    ) -> Generator[Step, None, Reconstruction]:
        run = begin_run(problem, prior, self.samples, seed)
        op, y = run.problem.operator, run.problem.y
        times = self.times(prior)
        x = run.normal()
        for i, (t, a_t, a_prev) in enumerate(run.schedule(times)):
            z = run.normal()
            # denoising step
            tweedie = Tweedie(run, x, t, self.grad_chunk)
            x0 = tweedie.x0

            def covariance(u, tweedie=tweedie, a_t=a_t):  # Tweedie's: (1 - a_t) / sqrt(a_t) J u
                return (1 - a_t) / a_t.sqrt() * tweedie.vjp(u)

            # moment-matched likelihood score: J^T A^H (s^2 I + A V A^H)^-1 (y - A x0_hat)
            v = measurement_solve(run.problem, covariance, y - op(x0), self.cg_iterations, self.cg_tolerance)
            score = tweedie.vjp(op.adjoint(v))
            # sampling step: DDIM from x0_hat + (1 - a_t) / sqrt(a_t) score
            x, x0 = posterior_step(x, x0, score, a_t, a_prev, self.eta, z, prior, self.clip)
            yield Step(i, len(times), run.preview(x0))
        return run.result(x0, nfe=self.nfe(len(times)), steps=len(times))
