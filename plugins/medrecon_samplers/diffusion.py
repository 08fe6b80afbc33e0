"""Diffusion posterior samplers: DPS, PiGDM, MMPS and DDS, on any diffusion prior and linear operator.

Notation: x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps with a_t = alpha-bar_t from the prior's noise table;
x0_hat = E[x0 | x_t] is the prior's Tweedie estimate. Sampling runs `steps` of the DDIM update
(Song, Meng, Ermon 2021) on an evenly spaced subset of the prior's time steps; eta = 1 gives
ancestral (DDPM) steps. `samples = K` draws K independent samples and returns their mean and
per-voxel standard deviation. Random numbers come from a CPU generator seeded with `seed`, so
CPU and CUDA runs see the same noise.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import Literal

import numpy as np
import torch

from medrecon import (
    DIFFUSION_PRIOR,
    LINEAR_OPERATOR,
    DiffusionPrior,
    InputError,
    Problem,
    Reconstruction,
    Sampler,
    Step,
)
from medrecon.intensity import estimate_intensity_map
from medrecon.numerics import TVSplitState, admm_tv_step, conjugate_gradient, operator_norm

log = logging.getLogger(__name__)


def check_parameters(sampler: str, **checks: tuple) -> None:
    """Raise InputError naming the first parameter whose check failed: name=(value, ok, expected)."""
    for name, (value, ok, expected) in checks.items():
        if not ok:
            raise InputError(f"{sampler}: {name} must be {expected}, got {value!r}")


def timesteps(prior: DiffusionPrior, steps: int) -> list[int]:
    """`steps` time indices from T - 1 down to 0, evenly spaced (descending, distinct)."""
    total = len(prior.alphas_cumprod)
    if not 1 <= steps <= total:
        raise InputError(f"steps must be between 1 and the prior's {total} time steps, got {steps}")
    grid = torch.linspace(total - 1, 0, steps).round().long().tolist()
    return sorted(set(grid), reverse=True)


def noise_of(x_t: torch.Tensor, x0: torch.Tensor, a_t: torch.Tensor) -> torch.Tensor:
    """The eps that x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps implies for a given x0 estimate."""
    return (x_t - a_t.sqrt() * x0) / (1 - a_t).sqrt()


def ddim_step(
    x0: torch.Tensor,
    eps: torch.Tensor,
    a_t: torch.Tensor,
    a_prev: torch.Tensor,
    eta: float,
    noise: torch.Tensor,
) -> torch.Tensor:
    """x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - s^2) eps + s z, s = eta * DDPM posterior std."""
    s = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).clamp_min(0).sqrt()
    return a_prev.sqrt() * x0 + (1 - a_prev - s**2).clamp_min(0).sqrt() * eps + s * noise


class DiffusionSampler(Sampler):
    """Shared loop: K chains of `steps` DDIM-type updates; subclasses give one update.

    `samples` = K draws K independent samples (mean as the image, per-voxel std as the std map).
    `eta` sets the DDIM step's noise: 0 deterministic, 1 ancestral (DDPM)."""

    requires = (LINEAR_OPERATOR, DIFFUSION_PRIOR)
    #: network evaluations per step
    nfe_per_step = 1
    #: slices per chunk for network gradients on volumes (0: the whole batch at once)
    grad_chunk = 0
    #: whether the result is the final iterate x_{-1} (a guidance step after the last Tweedie
    #: estimate, as DPS and MCG apply it) rather than the last x0 estimate
    final_iterate = False

    def __init__(self, steps: int, samples: int, eta: float):
        if samples < 1:
            raise InputError(f"samples must be >= 1, got {samples}")
        if not 0 <= eta <= 1:
            raise InputError(f"eta must be in [0, 1], got {eta}")
        self.steps, self.samples, self.eta = steps, samples, eta

    def iterate(
        self, problem: Problem, prior: DiffusionPrior, *, seed: int = 0
    ) -> Generator[Step, None, Reconstruction]:
        op = problem.operator
        self.dtype = op.domain_dtype
        if self.dtype.is_complex and not prior.complex_parts:
            raise InputError(
                f"the image is complex but prior {type(prior).__name__} models real images only (it was "
                "not trained on real and imaginary parts): use a prior that was, such as the "
                "diffusion prior's 'brain-1mm' weights, or an operator with complex_image = false"
            )
        times = self.times(prior)
        intensity = None
        if prior.data_range is not None:
            intensity = estimate_intensity_map(
                problem, prior.data_range, background=prior.background, demodulate=prior.remove_phase
            )
        self.intensity = intensity
        if intensity is not None:  # the prior sees its training range; the result is mapped back
            problem = intensity.to_model(problem)
        abar = prior.alphas_cumprod.to(problem.y.device)
        self._generator = torch.Generator().manual_seed(int(seed))
        device = problem.y.device
        shape = (self.samples, *op.domain_shape)  # the K chains run as one batch
        self.extra = 0
        self.start(problem)
        x = self.initial(problem, abar[times[0]], shape)
        x0 = x
        for i, t in enumerate(times):
            t_prev = times[i + 1] if i + 1 < len(times) else None
            a_t = abar[t]
            a_prev = abar[t_prev] if t_prev is not None else torch.ones((), device=device)
            noise = self.standard_normal(shape, device)
            x, x0 = self.update(problem, prior, x, t, a_t, a_prev, noise)
            yield Step(i, len(times), x0.mean(dim=0))
        info = {
            "nfe": self.nfe_per_step * len(times) * self.samples,
            "steps": len(times),
            "samples": self.samples,
        }
        if self.extra:
            info["vector_jacobian_products"] = self.extra * self.samples
        if self.final_iterate:  # the last step's guidance applies to the result too
            x0 = x
        if intensity is not None:
            x0 = intensity.to_physical(x0)
            info["intensity"] = intensity.describe()
        if self.samples == 1:
            return Reconstruction(x0[0], info=info)
        return Reconstruction(x0.mean(dim=0), std=x0.std(dim=0), samples=x0, info=info)

    @property
    def planned_nfe(self) -> int:
        return self.nfe_per_step * self.steps * self.samples

    def start(self, problem: Problem) -> None:
        """Reset per-run state (warm-started ADMM variables) before the first step."""

    def times(self, prior: DiffusionPrior) -> list[int]:
        """The time steps to run, descending (default: `steps` spread over the whole schedule)."""
        return timesteps(prior, self.steps)

    def initial(self, problem: Problem, a_start: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        """The starting iterate (default: pure noise, x_T ~ N(0, I))."""
        return self.standard_normal(shape, problem.y.device)

    def standard_normal(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """N(0, I) in the image's kind, from the run's seeded CPU generator. For complex images each
        part is N(0, I): the prior diffuses real and imaginary parts as two real images."""
        if self.dtype.is_complex:
            parts = torch.randn((2, *shape), generator=self._generator)
            return torch.complex(parts[0], parts[1]).to(device)
        return torch.randn(shape, generator=self._generator).to(device)

    def fresh_noise(self, like: torch.Tensor) -> torch.Tensor:
        """Standard normal noise shaped like `like`, from the run's seeded generator."""
        return self.standard_normal(tuple(like.shape), like.device)

    def update(self, problem, prior, x_t, t, a_t, a_prev, noise) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class _Tweedie:
    """x0_hat(x_t) and vector-Jacobian products J^T u (J = d x0_hat / d x_t), whole or in chunks.

    With `chunk = 0` one graph of the whole batch is kept. With `chunk = n` and volumes (K, D, H, W),
    x0_hat is computed without a graph and each J^T u re-runs the prior on n slices at a time along
    its slice axis, keeping one chunk's graph in memory: a 2D prior acts on each slice alone, so the
    Jacobian is block diagonal over slices and the chunks give exactly the whole product.
    """

    def __init__(self, prior: DiffusionPrior, x_t: torch.Tensor, t: int, owner: DiffusionSampler):
        self.owner, self.prior, self.t = owner, prior, t
        self.chunk = owner.grad_chunk if x_t.ndim >= 4 else 0
        self.x_t = x_t.detach()
        if self.chunk:
            self.axis = x_t.ndim - 3 + prior.slice_axis
            with torch.no_grad():
                self.x0 = prior.predict_x0(self.x_t, t)
        else:
            with torch.enable_grad():
                self._leaf = x_t.detach().requires_grad_(True)
                self._graph = prior.predict_x0(self._leaf, t)
            self.x0 = self._graph.detach()

    def vjp(self, u: torch.Tensor) -> torch.Tensor:
        self.owner.extra += 1
        if not self.chunk:
            with torch.enable_grad():
                return torch.autograd.grad(self._graph, self._leaf, u, retain_graph=True)[0]
        out = torch.empty_like(self.x_t)
        total = self.x_t.shape[self.axis]
        for start in range(0, total, self.chunk):
            size = min(self.chunk, total - start)
            with torch.enable_grad():
                piece = self.x_t.narrow(self.axis, start, size).detach().requires_grad_(True)
                x0 = self.prior.predict_x0(piece, self.t)
                grad = torch.autograd.grad(x0, piece, u.narrow(self.axis, start, size))[0]
            out.narrow(self.axis, start, size).copy_(grad)
        return out

    def grad_of(self, loss) -> torch.Tensor:
        """grad_{x_t} loss(x0_hat(x_t)): the gradient in x0_hat (no network), then one J^T product."""
        with torch.enable_grad():
            x0 = self.x0.detach().requires_grad_(True)
            (g0,) = torch.autograd.grad(loss(x0), x0)
        return self.vjp(g0)


def _ancestral(owner, prior, x_t, t, a_t, a_prev, noise):
    """Tweedie's estimate (graph kept for guidance) and the unguided ancestral step from it."""
    tw = _Tweedie(prior, x_t, t, owner)
    x0 = tw.x0.detach()
    return tw, x0, ddim_step(x0, noise_of(x_t, x0, a_t), a_t, a_prev, 1.0, noise)


def posterior_step(x_t, x0, score, a_t, a_prev, eta, noise, prior, clip):
    """Tweedie's formula with a posterior score, x0_post = x0_hat + (1 - a_t) / sqrt(a_t) * score
    (clamped if `clip`), then the DDIM step of `eta` from x0_post: (x_{t-1}, x0_post)."""
    x0_post = clip_to_range(x0 + (1 - a_t) / a_t.sqrt() * score, prior, clip)
    x_prev = ddim_step(x0_post, noise_of(x_t, x0_post, a_t), a_t, a_prev, eta, noise)
    return x_prev.detach(), x0_post.detach()


def clip_to_range(x0: torch.Tensor, prior: DiffusionPrior, clip: bool) -> torch.Tensor:
    """x0 estimates clamped to the prior's intensity range widened by a quarter on each side (the
    reference DPS and BlindDPS code clamp to [-1, 1]); unchanged without `clip` or a known range.
    Complex estimates have their real and imaginary parts clamped."""
    if not clip or prior.data_range is None:
        return x0
    lo, hi = prior.data_range
    margin = 0.25 * (hi - lo)
    if x0.is_complex():
        return torch.complex(x0.real.clamp(lo - margin, hi + margin), x0.imag.clamp(lo - margin, hi + margin))
    return x0.clamp(lo - margin, hi + margin)


class _LikelihoodGuided(DiffusionSampler):
    """DDIM with the Tweedie estimate corrected by a Gaussian likelihood approximation:
    p(y | x_t) ~ N(A x0_hat, s^2 I + A V A^H), whose score J^T A^H (s^2 I + A V A^H)^-1 (y - A x0_hat)
    moves x0_hat to x0_hat + (1 - a_t) / sqrt(a_t) * score (Tweedie's formula with the posterior score).
    The linear system in measurement space is solved by `cg_iterations` of CG."""

    #: clamp x0_hat + correction to the prior's range (see clip_to_range)
    clip = False

    def __init__(self, steps: int, samples: int, eta: float, cg_iterations: int, cg_tolerance: float = 0.0):
        super().__init__(steps, samples, eta)
        check_parameters(
            type(self).__name__.lower(),
            cg_iterations=(cg_iterations, cg_iterations >= 1, ">= 1"),
            cg_tolerance=(cg_tolerance, 0 <= cg_tolerance < 1, "in [0, 1)"),
        )
        self.cg_iterations, self.cg_tolerance = cg_iterations, cg_tolerance

    def covariance(self, tweedie: _Tweedie, a_t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def solve(
        self, problem: Problem, tweedie: _Tweedie, a_t: torch.Tensor, residual: torch.Tensor
    ) -> torch.Tensor:
        """(s^2 I + A V A^H)^-1 residual, by CG."""
        op, s2 = problem.operator, problem.noise_std**2

        def system(v: torch.Tensor) -> torch.Tensor:
            return s2 * v + op(self.covariance(tweedie, a_t, op.adjoint(v)))

        return conjugate_gradient(
            system, residual, iterations=self.cg_iterations, tol=self.cg_tolerance, batch_dims=1
        )

    def update(self, problem, prior, x_t, t, a_t, a_prev, noise):
        op, y = problem.operator, problem.y
        tw = _Tweedie(prior, x_t, t, self)
        x0 = tw.x0.detach()
        w = self.solve(problem, tw, a_t, y - op(x0))
        score = tw.vjp(op.adjoint(w))
        return posterior_step(x_t, x0, score, a_t, a_prev, self.eta, noise, prior, self.clip)


class PiGDM(_LikelihoodGuided):
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
        super().__init__(steps, samples, eta, cg_iterations)
        if solver not in ("auto", "exact", "cg"):
            raise InputError(f"solver must be auto, exact or cg, got {solver!r}")
        if weight not in ("published", "tweedie"):
            raise InputError(f"weight must be 'published' or 'tweedie', got {weight!r}")
        self.solver, self.weight = solver, weight
        self.grad_chunk = grad_chunk

    def update(self, problem, prior, x_t, t, a_t, a_prev, noise):
        if self.weight == "tweedie":
            return super().update(problem, prior, x_t, t, a_t, a_prev, noise)
        op, y = problem.operator, problem.y
        tw = _Tweedie(prior, x_t, t, self)
        x0 = tw.x0.detach()
        w = self.solve(problem, tw, a_t, y - op(x0))
        guidance = tw.vjp(op.adjoint(w))
        x_prev = ddim_step(x0, noise_of(x_t, x0, a_t), a_t, a_prev, self.eta, noise)
        return (x_prev + (a_prev * a_t).sqrt() * (1 - a_t) * guidance).detach(), x0

    def start(self, problem: Problem) -> None:
        op = problem.operator
        exact = self.solver != "cg" and op.solve_range_system(problem.y, 1.0, 1.0) is not None
        if self.solver == "exact" and not exact:
            log.warning("pigdm: %s has no exact solve of (r^2 A A^H + s^2 I); using CG", type(op).__name__)
        self.used = (
            "exact"
            if exact
            else ("cg (no exact solve for this operator)" if self.solver == "exact" else "cg")
        )

    def covariance(self, tweedie, a_t, u):
        return (1 - a_t) * u

    def solve(self, problem, tweedie, a_t, residual):
        if self.used == "exact":
            return problem.operator.solve_range_system(residual, float(1 - a_t), problem.noise_std**2)
        return super().solve(problem, tweedie, a_t, residual)

    def iterate(self, problem, prior, *, seed=0):
        result = yield from super().iterate(problem, prior, seed=seed)
        result.info["pigdm_solver"] = self.used
        result.info["pigdm_weight"] = self.weight
        return result


class MMPS(_LikelihoodGuided):
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
    is that small). Defaults: 100 steps, ancestral updates (eta = 1) and 20 CG iterations, four times
    the paper's 5: on the Gaussian oracle (CT texton, blur std 2 px, sigma 0.01, 200 samples) the
    centred mean error is 2.5% at 5 and 10 iterations and 1.7% at 20, where the solve no longer
    limits it (exact draws score 1.7%). Each CG iteration costs one vector-Jacobian product:
    `cg_iterations = 5` is the paper's cheaper setting."""

    def __init__(
        self,
        steps: int = 100,
        samples: int = 1,
        eta: float = 1.0,
        cg_iterations: int = 20,
        clip: bool = True,
        grad_chunk: int = 0,
        cg_tolerance: float = 0.0,
    ):
        super().__init__(steps, samples, eta, cg_iterations, cg_tolerance)
        self.grad_chunk = grad_chunk
        self.clip = clip

    def covariance(self, tweedie, a_t, u):
        return (1 - a_t) / a_t.sqrt() * tweedie.vjp(u)


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

    final_iterate = True

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

    def start(self, problem: Problem) -> None:
        self.weight = None  # Lambda of the Poisson variant (None: white noise)
        if self.noise_model == "poisson":
            inverse_variance = problem.inverse_variance
            if inverse_variance is None:
                raise InputError(
                    f"dps: noise_model 'poisson' needs an operator with counting noise (such as "
                    f"ct-parallel with photons); {type(problem.operator).__name__} here has white "
                    "Gaussian noise: use noise_model 'gaussian'"
                )
            scale = inverse_variance.mean() if self.rule == "chung" else 1.0
            self.weight = inverse_variance / scale
        elif self.rule == "gaussian" and not problem.noise_std > 0:
            raise InputError("dps: rule 'gaussian' divides by the noise variance: it needs noise_std > 0")

    def update(self, problem, prior, x_t, t, a_t, a_prev, noise):
        op, y, weight = problem.operator, problem.y, self.weight
        tw = _Tweedie(prior, x_t, t, self)
        if self.rule == "gaussian":
            x0 = tw.x0.detach()
            residual = y - op(x0)
            weighted = residual / problem.noise_std**2 if weight is None else weight * residual
            score = self.alpha * tw.vjp(op.adjoint(weighted))
            return posterior_step(x_t, x0, score, a_t, a_prev, 1.0, noise, prior, self.clip)
        x0 = clip_to_range(tw.x0.detach(), prior, self.clip)
        x_prev = ddim_step(x0, noise_of(x_t, x0, a_t), a_t, a_prev, 1.0, noise)
        root = None if weight is None else weight.sqrt()

        def residual_norms(z):  # one norm per chain; their sum has each chain's gradient
            residual = y - op(z) if root is None else root * (y - op(z))
            return torch.linalg.vector_norm(residual.reshape(self.samples, -1), dim=1).sum()

        grad = tw.grad_of(residual_norms)
        return (x_prev - self.zeta * grad).detach(), x0


class DDS(DiffusionSampler):
    """Decomposed diffusion sampling (Chung, Lee, Ye, ICLR 2024): x0_hat by Tweedie, then
    `cg_iterations` of CG on (A^H A + gamma I) x = A^H y + gamma x0_hat started at x0_hat (a few
    Krylov steps keep the update on the clean-data manifold), then the step to t - 1 from the
    refined x0 and the network's eps. No network gradient. `gamma` is in units of ||A||^2 (so one
    setting carries over between operators); the paper's noisy-data setting, (I + A^T A) x =
    x0_hat + A^T y for ||A|| = 1, is gamma = 1, and gamma = 0 its noiseless one. The default is 0:
    on the Gaussian oracle's CT texton case (50 steps) gamma = 1 has a centred mean error of 22% /
    12% at sigma 0.01 / 0.05 and gamma = 0 7.3% / 73% (it fits the noise when there is much of it),
    but with 5 CG iterations and a trained prior it fell below CG-SENSE (8x MRI of 4 held-out
    slices, brain-axial, 20 steps: 21.3 dB against CG-SENSE's 21.7; gamma = 0 clears it by more
    than 1 dB), so on noisy data ask for the reference's setting with gamma = 1.
    `eta_rule` = "dds" (default) is the paper's step, x_{t-1} = sqrt(a_{t-1}) x0 + sqrt(1 - a_{t-1})
    (eta z + sqrt(1 - eta^2) eps_hat) with fresh noise z; "ddim" is DDIM's eta (noise of eta times
    the DDPM posterior std).
    For volumes, `tv_z > 0` makes the data-consistency step one warm-started ADMM iteration with TV
    along z (weight tv_z, penalty rho, both in units of ||A||^2), the paper's 3D variant.
    `result` = "refined" (default, the paper's x_0) returns the last data-consistency step's output;
    "denoised" returns the network's last estimate x0_hat before it: the final CG step fits the
    measurement noise (with gamma = 0 nothing holds it back), which the network's estimate, one
    step earlier, no longer carries. Measured on the validation slab of brain-1mm (1 slice, the
    demo's tuned settings): MRI 4x 29.03 -> 30.62 dB (SSIM 0.38 -> 0.57), 8x 27.64 -> 28.26 dB.
    Defaults: 50 steps (50 network evaluations), eta = 0.85, 5 CG iterations."""

    def __init__(
        self,
        steps: int = 50,
        samples: int = 1,
        eta: float = 0.85,
        cg_iterations: int = 5,
        gamma: float = 0.0,
        tv_z: float = 0.0,
        rho: float = 0.01,
        eta_rule: Literal["dds", "ddim"] = "dds",
        result: Literal["refined", "denoised"] = "refined",
    ):
        super().__init__(steps, samples, eta)
        check_parameters(
            "dds",
            result=(result, result in ("refined", "denoised"), "'refined' or 'denoised'"),
            cg_iterations=(
                cg_iterations,
                cg_iterations >= 1,
                ">= 1 (with 0 the measurement would be ignored)",
            ),
            gamma=(gamma, gamma >= 0, ">= 0"),
            tv_z=(tv_z, tv_z >= 0, ">= 0"),
            rho=(rho, rho > 0, "> 0"),
            eta_rule=(eta_rule, eta_rule in ("dds", "ddim"), "'dds' or 'ddim'"),
        )
        self.cg_iterations, self.gamma, self.tv_z, self.rho = cg_iterations, gamma, tv_z, rho
        self.eta_rule, self.result = eta_rule, result

    def start(self, problem: Problem) -> None:
        if self.tv_z and len(problem.operator.domain_shape) != 3:
            raise InputError("dds with tv_z needs a volume (D, H, W): TV along z couples slices")
        self.state = TVSplitState()
        needs_norm = self.tv_z or self.gamma
        self.norm2 = operator_norm(problem.operator, iterations=20) ** 2 if needs_norm else 1.0
        self.aty = problem.operator.adjoint(problem.y)  # the same at every step

    def iterate(self, problem, prior, *, seed=0):
        result = yield from super().iterate(problem, prior, seed=seed)
        result.info["dds_gamma"] = self.gamma
        result.info["dds_result"] = self.result
        return result

    def step(self, refined, eps, a_t, a_prev, noise) -> torch.Tensor:
        """From the refined x0 to x_{t-1}, by the paper's rule or DDIM's."""
        if self.eta_rule == "ddim":
            return ddim_step(refined, eps, a_t, a_prev, self.eta, noise)
        mixed = self.eta * noise + (1 - self.eta**2) ** 0.5 * eps
        return a_prev.sqrt() * refined + (1 - a_prev).clamp_min(0).sqrt() * mixed

    def update(self, problem, prior, x_t, t, a_t, a_prev, noise):
        op = problem.operator
        x0 = prior.predict_x0(x_t, t)
        eps = noise_of(x_t, x0, a_t)
        aty = self.aty
        if self.tv_z:
            refined = admm_tv_step(
                op.gram,
                aty,
                x0,
                self.state,
                weight=self.tv_z * self.norm2,
                rho=self.rho * self.norm2,
                cg_iterations=self.cg_iterations,
                gamma=self.gamma * self.norm2,
                anchor=x0,
                batch_dims=1,
            )
        else:
            gamma = self.gamma * self.norm2
            refined = conjugate_gradient(
                lambda v: op.gram(v) + gamma * v,
                aty + gamma * x0,
                x0,
                iterations=self.cg_iterations,
                batch_dims=1,
            )
        # the estimate reported (the result after the last step): refined, or the network's x0_hat
        denoised = self.result == "denoised" and bool(a_prev >= 1)
        return self.step(refined, eps, a_t, a_prev, noise), x0 if denoised else refined


class DiffusionMBIR(DiffusionSampler):
    """DiffusionMBIR (Chung, Kim, Kim, Ye, CVPR 2023): slice-wise 2D diffusion, tied into a coherent
    volume by one warm-started ADMM iteration of data consistency with TV along z per step (CG
    x-update on (A^H A + rho D_z^H D_z) x = A^H y + rho D_z^H (w - u), soft-thresholded w, dual u;
    w and u persist across steps). `tv_z` (lambda) and `rho` are in units of ||A||^2, estimated once
    by power iteration, so that one setting carries over between operators. Two forms:

    - `form = "paper"`: the paper's variance-exploding predictor-corrector sampler, on the prior's own
      noise levels sigma_t = sqrt((1 - a_t) / a_t) (x_VE = x_t / sqrt(a_t), score (x0_hat - x_VE) /
      sigma_t^2 from the network). As the authors' code orders it: a reverse-diffusion predictor step
      from sigma_t to sigma_{t-1}, one Langevin corrector step with the score at t (signal-to-noise
      `snr`, 0.16), then one ADMM iteration with `cg_iterations` CG steps (1 in the reference)
      against the measured y itself; after the last step, one normalised Landweber step
      x += A^H (y - A x) / ||A||^2 (their "final consistency"). Two network evaluations per step.
      Their sparse-view CT setting, lambda = 0.04 and rho = 10 with their back-projection scaled by
      pi / (2 views) on 256^2 images (||A||^2 about pi 256 / 2 = 402), is tv_z = 1e-4 and
      rho = 0.025 here (the defaults of this form); they run 2000 steps, this prior has 1000 levels.
      Measured on 8-view CT of a 32^2 x 8 phantom with a Gaussian prior: 11.7 dB at 100 steps and
      12.6 at 1000, against 16.6 for the VP form at 100 steps and 13.9 for FBP; with 5 CG steps or
      rho = 0.25 it diverges (the consistency step leaves the iterate cleaner than sigma_t, the score
      shrinks and the Langevin step, sized by 1 / ||score||^2, explodes), which is why the
      reference takes a single CG step.
    - `form = "vp"` (default, the form the demo was tuned with): the same splitting in the prior's
      variance-preserving process. Consistency is imposed on the iterate against a measurement noised
      to the same level, y_{t-1} = sqrt(a_{t-1}) y + sqrt(1 - a_{t-1}) A z (as the score-based CT
      solver of Song et al., ICLR 2022), one network evaluation per step, no final step. Defaults:
      1000 ancestral steps, 5 CG iterations, tv_z = 0.002 and rho = 0.01 (on 8-view CT of a
      32^2 x 8 phantom with a Gaussian prior, 100 steps: 16.6 dB against 12.8 without TV)."""

    def __init__(
        self,
        steps: int = 1000,
        samples: int = 1,
        tv_z: float | None = None,
        rho: float | None = None,
        cg_iterations: int | None = None,
        form: Literal["vp", "paper"] = "vp",
        snr: float = 0.16,
    ):
        super().__init__(steps, samples, eta=1.0)
        paper = form == "paper"
        tv_z = (1e-4 if paper else 0.002) if tv_z is None else tv_z
        rho = (0.025 if paper else 0.01) if rho is None else rho
        cg_iterations = (1 if paper else 5) if cg_iterations is None else cg_iterations
        check_parameters(
            "diffusion-mbir",
            tv_z=(tv_z, tv_z >= 0, ">= 0"),
            rho=(rho, rho > 0, "> 0"),
            cg_iterations=(cg_iterations, cg_iterations >= 1, ">= 1"),
            form=(form, form in ("vp", "paper"), "'vp' or 'paper'"),
            snr=(snr, snr > 0, "> 0"),
        )
        self.tv_z, self.rho, self.cg_iterations = tv_z, rho, cg_iterations
        self.form, self.snr = form, snr
        self.nfe_per_step = 2 if paper else 1
        self.final_iterate = paper  # the result is the last iterate after the final consistency step

    def start(self, problem: Problem) -> None:
        if len(problem.operator.domain_shape) != 3:
            raise InputError("diffusion-mbir needs a volume (D, H, W): its TV along z couples slices")
        self.state = TVSplitState()
        self.norm2 = operator_norm(problem.operator, iterations=20) ** 2
        self.aty = problem.operator.adjoint(problem.y)

    def data_consistency(self, problem: Problem, x: torch.Tensor, aty: torch.Tensor) -> torch.Tensor:
        """One warm-started ADMM-TV-z iteration from x against A^H y = `aty`."""
        return admm_tv_step(
            problem.operator.gram,
            aty,
            x,
            self.state,
            weight=self.tv_z * self.norm2,
            rho=self.rho * self.norm2,
            cg_iterations=self.cg_iterations,
            batch_dims=1,
        )

    def update(self, problem, prior, x_t, t, a_t, a_prev, noise):
        if self.form == "paper":
            return self.predictor_corrector(problem, prior, x_t, t, a_t, a_prev, noise)
        op = problem.operator
        x0 = prior.predict_x0(x_t, t)
        eps = noise_of(x_t, x0, a_t)
        x_prev = ddim_step(x0, eps, a_t, a_prev, 1.0, noise)
        # A^H y_{t-1} for y_{t-1} = sqrt(a_{t-1}) y + sqrt(1 - a_{t-1}) A z, as one Gram application
        aty_prev = a_prev.sqrt() * self.aty + (1 - a_prev).sqrt() * op.gram(self.fresh_noise(x_prev))
        return self.data_consistency(problem, x_prev, aty_prev), x0

    def predictor_corrector(self, problem, prior, x_t, t, a_t, a_prev, noise):
        """The paper's step in variance-exploding coordinates, returned in the prior's (VP) ones."""
        sigma2, sigma2_prev = (1 - a_t) / a_t, (1 - a_prev) / a_prev

        def score(x_ve: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x0 = prior.predict_x0(a_t.sqrt() * x_ve, t)
            return (x0 - x_ve) / sigma2, x0

        x = x_t / a_t.sqrt()
        # predictor: reverse diffusion from sigma_t to sigma_{t-1}
        grad, x0 = score(x)
        step = (sigma2 - sigma2_prev).clamp_min(0)
        x = x + step * grad + step.sqrt() * noise
        # corrector: one Langevin step with the score at t, its size set by the signal-to-noise ratio
        grad, _ = score(x)
        z = self.fresh_noise(x)
        dims = tuple(range(1, x.ndim))
        grad_norm = torch.linalg.vector_norm(grad, dim=dims).clamp_min(1e-30)
        ratio = torch.linalg.vector_norm(z, dim=dims) / grad_norm
        size = (2 * (self.snr * ratio) ** 2).reshape(-1, *([1] * (x.ndim - 1)))
        x = x + size * grad + (2 * size).sqrt() * z
        # data consistency against the measured y: one ADMM-TV-z iteration
        x = self.data_consistency(problem, x, self.aty)
        if bool(a_prev >= 1):  # after the last step: the normalised Landweber step
            op = problem.operator
            x = x + op.adjoint(problem.y - op(x)) / self.norm2
        return a_prev.sqrt() * x, x0

    def iterate(self, problem, prior, *, seed=0):
        result = yield from super().iterate(problem, prior, seed=seed)
        result.info["mbir_form"] = self.form
        return result


class CCDF(DDS):
    """Come-closer-diffuse-faster (Chung, Sim, Ye, CVPR 2022): forward-diffuse an initial estimate to
    t0 = `t0` * T, x_t0 = sqrt(a) x_init + sqrt(1 - a) eps, and run only the `steps` reverse steps
    below t0 with data consistency, then DDIM with eta. The paper's contraction argument needs a
    non-expansive consistency step: `consistency` = "projection" takes x0_hat onto {x : A x = y}
    exactly, x0_hat + A^+ (y - A x0_hat), where the operator has a pseudo-inverse (inpainting,
    downsampling); "cg" is DDS's update (a few CG steps on the normal equations from x0_hat), for
    operators without one (multi-coil MRI, CT); "auto" (default) the projection where it exists.
    A good start makes a short reverse path enough. `init` names the classical estimate (zero-filled
    / back-projection "adjoint", "cg", "fbp" for CT); `init_image` takes any other, such as another
    sampler's result, in the problem's units. Defaults: t0 = 0.2 and 20 steps, as in the paper."""

    def __init__(
        self,
        steps: int = 20,
        t0: float = 0.2,
        init: Literal["adjoint", "cg", "fbp"] = "cg",
        init_image: np.ndarray | None = None,
        samples: int = 1,
        eta: float = 0.85,
        cg_iterations: int = 5,
        tv_z: float = 0.0,
        rho: float = 0.01,
        consistency: Literal["auto", "projection", "cg"] = "auto",
    ):
        super().__init__(steps, samples, eta, cg_iterations, 0.0, tv_z, rho, eta_rule="ddim")
        if not 0 < t0 <= 1:
            raise InputError(f"t0 must be in (0, 1], got {t0}")
        if init not in ("adjoint", "cg", "fbp"):
            raise InputError(f"init must be adjoint, cg or fbp, got {init!r}")
        if consistency not in ("auto", "projection", "cg"):
            raise InputError(f"consistency must be auto, projection or cg, got {consistency!r}")
        self.t0, self.init, self.init_image, self.consistency = t0, init, init_image, consistency

    def start(self, problem: Problem) -> None:
        super().start(problem)
        op = problem.operator
        has_projection = op.pseudo_inverse(torch.zeros_like(problem.y)) is not None
        if self.consistency == "projection" and not has_projection:
            raise InputError(
                f"ccdf: consistency 'projection' needs an operator with an exact pseudo-inverse; "
                f"{type(op).__name__} has none: use 'cg'"
            )
        self.projects = self.consistency != "cg" and has_projection and not self.tv_z

    def update(self, problem, prior, x_t, t, a_t, a_prev, noise):
        if not self.projects:
            return super().update(problem, prior, x_t, t, a_t, a_prev, noise)
        op = problem.operator
        x0 = prior.predict_x0(x_t, t)
        projected = x0 + op.pseudo_inverse(problem.y - op(x0))
        return self.step(projected, noise_of(x_t, x0, a_t), a_t, a_prev, noise), projected

    def iterate(self, problem, prior, *, seed=0):
        result = yield from super().iterate(problem, prior, seed=seed)
        result.info["ccdf_consistency"] = "projection" if self.projects else "cg"
        return result

    def times(self, prior: DiffusionPrior) -> list[int]:
        start = max(0, round(self.t0 * len(prior.alphas_cumprod)) - 1)
        if self.steps > start + 1:
            raise InputError(
                f"ccdf: {self.steps} steps do not fit below t0 = {self.t0} ({start + 1} time steps)"
            )
        grid = torch.linspace(start, 0, self.steps).round().long().tolist()
        return sorted(set(grid), reverse=True)

    def initial(self, problem: Problem, a_start: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        op, y = problem.operator, problem.y
        if self.init_image is not None:
            kind = np.complex64 if op.domain_dtype.is_complex else np.float32
            start = torch.as_tensor(np.asarray(self.init_image).astype(kind), device=y.device)
            if tuple(start.shape) != tuple(op.domain_shape):
                raise InputError(f"init_image has shape {tuple(start.shape)}; expected {op.domain_shape}")
            if self.intensity is not None:  # given in physical units: into the prior's range
                start = (start - self.intensity.offset) / self.intensity.scale
        elif self.init == "fbp":
            if op.first_look_name != "fbp":
                raise InputError(f"ccdf: init 'fbp' needs a CT operator; {type(op).__name__} has no fbp()")
            start = op.first_look(y)
        elif self.init == "adjoint":
            start = op.adjoint(y)
        else:
            start = conjugate_gradient(op.gram, op.adjoint(y), iterations=20)
        noise = self.standard_normal(shape, y.device)
        return a_start.sqrt() * start + (1 - a_start).sqrt() * noise


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

    final_iterate = True

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

    def update(self, problem, prior, x_t, t, a_t, a_prev, noise):
        op, y = problem.operator, problem.y
        tw, x0, x_prev = _ancestral(self, prior, x_t, t, a_t, a_prev, noise)

        def loss(z: torch.Tensor) -> torch.Tensor:  # per chain ||r||, as the authors' code steps
            return torch.linalg.vector_norm((y - op(z)).reshape(self.samples, -1), dim=1).sum()

        x_prev = x_prev - self.alpha * tw.grad_of(loss)
        if self.project:
            y_prev = a_prev.sqrt() * y + (1 - a_prev).sqrt() * op(self.fresh_noise(x_prev))
            residual = y_prev - op(x_prev)
            correction = op.pseudo_inverse(residual)
            if correction is None:
                correction = conjugate_gradient(
                    op.gram, op.adjoint(residual), iterations=self.cg_iterations, batch_dims=1
                )
            x_prev = x_prev + correction
        return x_prev.detach(), x0
