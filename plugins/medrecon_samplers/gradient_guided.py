"""Samplers guided by the gradient of the data fit through the network: DPS and MCG."""

from __future__ import annotations

from collections.abc import Generator
from typing import Literal

import torch

from medrecon import DiffusionPrior, InputError, Problem, Reconstruction, Step
from medrecon.numerics import conjugate_gradient, ddim_step, noise_of
from medrecon_samplers.diffusion_steps import (
    DiffusionSampler,
    Tweedie,
    begin_run,
    check_parameters,
    clip_to_range,
    posterior_step,
    residual_norms,
)


class DPS(DiffusionSampler):
    """Diffusion posterior sampling (Chung, Kim, Mccann, Klasky, Ye, ICLR 2023), in two forms:

    - `rule = "chung"` (default, the paper's Algorithm 1 and the authors' code): an ancestral step
      from the unconditional x0_hat, then x_{t-1} -= zeta * grad_{x_t} ||y - A x0_hat(x_t)||. zeta is
      an absolute step in the units of x_t: the gradient of ||y - A x0_hat|| scales with ||A||, so a
      zeta for one operator's norm carries over to another as zeta * ||A_old|| / ||A_new||.
    - `rule = "gaussian"`: DPS's likelihood p(y | x_t) ~ N(A x0_hat, sigma^2 / alpha I) used as
      a Gaussian likelihood approximation (Pierret and Galerne 2025, Algorithm 8 with C = sigma^2 /
      alpha I): x0_post = x0_hat + (1 - a_t) / sqrt(a_t) * (alpha / sigma^2) J^T A^H (y - A x0_hat),
      then the ancestral step from x0_post. Linear in y and the noises, so its output law on the
      Gaussian oracle is computable exactly; alpha is its step (alpha = 1: the plain likelihood).
      Needs noise_std > 0.

    `noise_model = "poisson"` is the paper's Poisson variant (its Algorithm 2: the residual's norm
    weighted by the inverse noise variance Lambda) for measurements with counting noise: the
    operator gives Lambda (`inverse_variance`; for CT with `photons`, the log of Poisson counts has
    variance 1 / counts, so Lambda = photons * exp(-y), the weights of penalised weighted least
    squares; the paper's 1 / (2 y) is for counts observed directly). With rule "chung" Lambda is
    normalised to mean 1 (the step is scale free); with rule "gaussian" it replaces 1 / sigma^2.

    The result is the final iterate, after the last step's guidance (as in the paper's algorithm).
    `clip` clamps x0_hat to the prior's range (widened by a quarter) before the ancestral step, as
    the authors' code clamps it to [-1, 1]; the gradient is taken through the unclamped estimate.
    Defaults: 1000 steps and zeta = 0.5, inside the paper's range of 0.1 to 1 (at 1.0 the
    covariance blew up on a well-posed Gaussian test problem); tune it per problem."""

    def __init__(
        self,
        steps: int = 1000,
        samples: int = 1,
        zeta: float = 0.5,
        clip: bool = False,
        grad_chunk: int = 0,
        rule: Literal["chung", "gaussian"] = "chung",
        alpha: float = 1.0,
        noise_model: Literal["gaussian", "poisson"] = "gaussian",
    ):
        super().__init__(steps, samples, eta=1.0)
        check_parameters(
            "dps",
            zeta=(zeta, zeta >= 0, ">= 0"),
            rule=(rule, rule in ("chung", "gaussian"), "'chung' or 'gaussian'"),
            alpha=(alpha, alpha > 0, "> 0"),
            noise_model=(noise_model, noise_model in ("gaussian", "poisson"), "'gaussian' or 'poisson'"),
        )
        self.grad_chunk = grad_chunk
        self.zeta, self.clip, self.rule, self.alpha = zeta, clip, rule, alpha
        self.noise_model = noise_model

    def noise_weights(self, problem: Problem) -> torch.Tensor | None:
        """Lambda, the inverse noise variance of the Poisson variant (None: white noise)."""
        if self.noise_model == "poisson":
            inverse_variance = problem.inverse_variance
            if inverse_variance is None:
                raise InputError(
                    f"dps: noise_model 'poisson' needs an operator with counting noise (such as "
                    f"ct-parallel with photons); {type(problem.operator).__name__} here has white "
                    "Gaussian noise: use noise_model 'gaussian'"
                )
            return inverse_variance / (inverse_variance.mean() if self.rule == "chung" else 1.0)
        if self.rule == "gaussian" and not problem.noise_std > 0:
            raise InputError("dps: rule 'gaussian' divides by the noise variance: it needs noise_std > 0")
        return None

    def iterate(
        self, problem: Problem, prior: DiffusionPrior, *, seed: int = 0
    ) -> Generator[Step, None, Reconstruction]:
        run = begin_run(problem, prior, self.samples, seed)
        op, y = run.problem.operator, run.problem.y
        weight = self.noise_weights(run.problem)
        root = None if weight is None else weight.sqrt()
        times = self.times(prior)
        x = run.normal()
        for i, (t, a_t, a_prev) in enumerate(run.schedule(times)):
            z = run.normal()
            # denoising step: Tweedie's estimate, its graph kept for the guidance gradient
            tweedie = Tweedie(run, x, t, self.grad_chunk)
            if self.rule == "gaussian":
                # likelihood step: x0_post = x0_hat + (1 - a_t) / sqrt(a_t) alpha J^T A^H Lambda r
                x0 = tweedie.x0
                residual = y - op(x0)
                weighted = residual / run.problem.noise_std**2 if weight is None else weight * residual
                score = self.alpha * tweedie.vjp(op.adjoint(weighted))
                # sampling step: ancestral, from x0_post
                x, x0 = posterior_step(x, x0, score, a_t, a_prev, 1.0, z, prior, self.clip)
            else:
                x0 = clip_to_range(tweedie.x0, prior, self.clip)
                # sampling step: ancestral, from the unconditional x0_hat
                x_prev = ddim_step(x0, noise_of(x, x0, a_t), a_t, a_prev, 1.0, z)
                # guidance step: x_{t-1} -= zeta grad_{x_t} ||y - A x0_hat(x_t)|| (Lambda-weighted)
                grad = tweedie.grad_of(
                    lambda v: residual_norms(y - op(v) if root is None else root * (y - op(v)), self.samples)
                )
                x = (x_prev - self.zeta * grad).detach()
            yield Step(i, len(times), run.preview(x0))
        # the result is the last iterate: the last step's guidance applies to it
        return run.result(x, nfe=self.nfe(len(times)), steps=len(times))


class MCG(DiffusionSampler):
    """Manifold-constrained gradient (Chung, Sim, Ryu, Ye, NeurIPS 2022): an ancestral step from
    x0_hat, the gradient step x -= alpha * grad_{x_t} ||y - A x0_hat(x_t)|| (the authors' code's step:
    the gradient of the norm, not of its square, which is twice as long), then projection onto the
    measurement set {x : A x = y_{t-1}} for the measurement noised to the iterate's level,
    y_{t-1} = sqrt(a_{t-1}) y + sqrt(1 - a_{t-1}) A z. The projection adds the minimum-norm correction
    A^+ (y_{t-1} - A x): exactly where the operator has a pseudo-inverse (inpainting, downsampling),
    else by `cg_iterations` of CG on A^H A started at zero (which stays in the range of A^H). The
    paper's projection assumes noiseless data; with noisy
    measurements `project = false` keeps only the gradient. The result is the final iterate (after
    the last step's gradient and projection). Defaults: 1000 steps, alpha = 1.0."""

    def __init__(
        self,
        steps: int = 1000,
        samples: int = 1,
        alpha: float = 1.0,
        project: bool = True,
        cg_iterations: int = 10,
        grad_chunk: int = 0,
    ):
        super().__init__(steps, samples, eta=1.0)
        check_parameters(
            "mcg",
            alpha=(alpha, alpha >= 0, ">= 0"),
            cg_iterations=(cg_iterations, cg_iterations >= 1, ">= 1"),
        )
        self.alpha, self.project, self.cg_iterations = alpha, project, cg_iterations
        self.grad_chunk = grad_chunk

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
            # sampling step: ancestral, from x0_hat
            x_prev = ddim_step(x0, noise_of(x, x0, a_t), a_t, a_prev, 1.0, z)
            # manifold-constrained gradient step
            x_prev = x_prev - self.alpha * tweedie.grad_of(lambda v: residual_norms(y - op(v), self.samples))
            # projection onto {x : A x = y_{t-1}}, y noised to the iterate's level
            if self.project:
                y_prev = a_prev.sqrt() * y + (1 - a_prev).sqrt() * op(run.normal())
                residual = y_prev - op(x_prev)
                correction = op.pseudo_inverse(residual)
                if correction is None:
                    correction = conjugate_gradient(
                        op.gram, op.adjoint(residual), iterations=self.cg_iterations, batch_dims=1
                    )
                x_prev = x_prev + correction
            x = x_prev.detach()
            yield Step(i, len(times), run.preview(x0))
        return run.result(x, nfe=self.nfe(len(times)), steps=len(times))
