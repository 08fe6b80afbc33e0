"""The pieces every diffusion sampler's loop is written with.

Notation: x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps with a_t = alpha-bar_t from the prior's noise table;
x0_hat = E[x0 | x_t] is the prior's Tweedie estimate. A sampler runs `steps` updates on an evenly
spaced subset of the prior's time steps. `samples = K` draws K independent chains as one batch and
returns their mean and per-voxel standard deviation. Random numbers come from a CPU generator seeded
with `seed`, so CPU and CUDA runs see the same noise.

What one run needs besides the sampler's parameters (the problem in the prior's units, the chains'
shape, the seeded noise, counts) is a `DiffusionRun`, made by `begin_run` and local to the
sampler's `iterate`: nothing of a run is kept on the sampler.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from medrecon import (
    DIFFUSION_PRIOR,
    LINEAR_OPERATOR,
    DiffusionPrior,
    InputError,
    Problem,
    Reconstruction,
    Sampler,
)
from medrecon.numerics import conjugate_gradient, ddim_step, noise_of
from medrecon.numerics.intensity import IntensityMap, estimate_intensity_map


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


def posterior_step(x_t, x0, score, a_t, a_prev, eta, noise, prior, clip):
    """Tweedie's formula with a posterior score, x0_post = x0_hat + (1 - a_t) / sqrt(a_t) * score
    (clamped if `clip`), then the DDIM step of `eta` from x0_post: (x_{t-1}, x0_post)."""
    x0_post = clip_to_range(x0 + (1 - a_t) / a_t.sqrt() * score, prior, clip)
    x_prev = ddim_step(x0_post, noise_of(x_t, x0_post, a_t), a_t, a_prev, eta, noise)
    return x_prev.detach(), x0_post.detach()


def residual_norms(residual: torch.Tensor, chains: int) -> torch.Tensor:
    """The sum over chains of each chain's ||residual||: its gradient is each chain's own."""
    return torch.linalg.vector_norm(residual.reshape(chains, -1), dim=1).sum()


def measurement_solve(problem: Problem, covariance, residual, iterations: int, tolerance: float = 0.0):
    """(s^2 I + A V A^H)^-1 residual by CG, for a Gaussian likelihood N(A x0_hat, s^2 I + A V A^H)
    with the covariance V given as a function."""
    op, s2 = problem.operator, problem.noise_std**2

    def system(v: torch.Tensor) -> torch.Tensor:
        return s2 * v + op(covariance(op.adjoint(v)))

    return conjugate_gradient(system, residual, iterations=iterations, tol=tolerance, batch_dims=1)


@dataclass
class DiffusionRun:
    """One run's working set: the problem in the prior's units, the K chains' shape, the noise
    table, the seeded source of the run's noise, and the count of vector-Jacobian products."""

    problem: Problem
    prior: DiffusionPrior
    shape: tuple[int, ...]
    abar: torch.Tensor
    generator: torch.Generator
    intensity: IntensityMap | None
    vjps: int = 0

    def normal(self) -> torch.Tensor:
        """N(0, I) of the chains' shape in the image's kind. For complex images each part is
        N(0, I): the prior diffuses real and imaginary parts as two real images."""
        device = self.problem.y.device
        if self.problem.operator.domain_dtype.is_complex:
            parts = torch.randn((2, *self.shape), generator=self.generator)
            return torch.complex(parts[0], parts[1]).to(device)
        return torch.randn(self.shape, generator=self.generator).to(device)

    def schedule(self, times: list[int]) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """(t, a_t, a_{t-1}) for each of `times` (descending); a_{t-1} = 1 after the last."""
        one = torch.ones((), device=self.abar.device)
        for i, t in enumerate(times):
            yield t, self.abar[t], self.abar[times[i + 1]] if i + 1 < len(times) else one

    def to_model(self, image: torch.Tensor) -> torch.Tensor:
        """An image in the problem's physical units, in the prior's."""
        return image if self.intensity is None else self.intensity.from_physical(image)

    def preview(self, x0: torch.Tensor) -> torch.Tensor:
        """The chains' mean estimate in physical units, for a Step."""
        return self.to_physical(x0.detach()).mean(dim=0)

    def to_physical(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.intensity is None else self.intensity.to_physical(x)

    def result(self, x: torch.Tensor, *, nfe: int, steps: int, **info) -> Reconstruction:
        """The K chains' final images (prior units) as the Reconstruction: mean and std over chains."""
        chains = self.shape[0]
        info = {"nfe": nfe, "steps": steps, "samples": chains, **info}
        if self.vjps:
            info["vector_jacobian_products"] = self.vjps * chains
        if self.intensity is not None:
            info["intensity"] = self.intensity.describe()
        x = self.to_physical(x.detach())
        if chains == 1:
            return Reconstruction(x[0], info=info)
        return Reconstruction(x.mean(dim=0), std=x.std(dim=0), samples=x, info=info)


def begin_run(problem: Problem, prior: DiffusionPrior, chains: int, seed: int) -> DiffusionRun:
    """The run's working set: the problem mapped into the prior's intensity range (when the prior
    has one; the result is mapped back), K = `chains` chains, the generator seeded with `seed`."""
    op = problem.operator
    if op.domain_dtype.is_complex and not prior.complex_parts:
        raise InputError(
            f"the image is complex but prior {type(prior).__name__} models real images only (it was "
            "not trained on real and imaginary parts): use a prior that was, such as the "
            "diffusion prior's 'brain-1mm' weights, or an operator with complex_image = false"
        )
    intensity = None
    if prior.data_range is not None:
        intensity = estimate_intensity_map(
            problem, prior.data_range, background=prior.background, demodulate=prior.remove_phase
        )
        problem = intensity.to_model(problem)
    return DiffusionRun(
        problem=problem,
        prior=prior,
        shape=(chains, *op.domain_shape),
        abar=prior.alphas_cumprod.to(problem.y.device),
        generator=torch.Generator().manual_seed(int(seed)),
        intensity=intensity,
    )


class Tweedie:
    """x0_hat(x_t) and vector-Jacobian products J^T u (J = d x0_hat / d x_t), whole or in chunks.

    With `chunk = 0` one graph of the whole batch is kept. With `chunk = n` and volumes (K, D, H, W),
    x0_hat is computed without a graph and each J^T u re-runs the prior on n slices at a time along
    its slice axis, keeping one chunk's graph in memory: a 2D prior acts on each slice alone, so the
    Jacobian is block diagonal over slices and the chunks give exactly the whole product. Each
    product is counted in the run's `vjps`.
    """

    def __init__(self, run: DiffusionRun, x_t: torch.Tensor, t: int, chunk: int = 0):
        self.run, self.prior, self.t = run, run.prior, t
        self.chunk = chunk if x_t.ndim >= 4 else 0
        self.x_t = x_t.detach()
        if self.chunk:
            self.axis = x_t.ndim - 3 + self.prior.slice_axis
            with torch.no_grad():
                self.x0 = self.prior.predict_x0(self.x_t, t)
        else:
            with torch.enable_grad():
                self._leaf = x_t.detach().requires_grad_(True)
                self._graph = self.prior.predict_x0(self._leaf, t)
            self.x0 = self._graph.detach()

    def vjp(self, u: torch.Tensor) -> torch.Tensor:
        self.run.vjps += 1
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


class DiffusionSampler(Sampler):
    """What the diffusion samplers share: their parameters `steps`, `samples` (K independent chains:
    their mean is the image, their per-voxel std the std map) and `eta` (the noise of a DDIM-type
    step: 0 deterministic, 1 ancestral), and the cost known before a run. Each writes its own
    `iterate`: one loop over the time steps, with the pieces of this module."""

    requires = (LINEAR_OPERATOR, DIFFUSION_PRIOR)
    #: network evaluations per step
    nfe_per_step = 1
    #: slices per chunk for network gradients on volumes (0: the whole batch at once)
    grad_chunk = 0

    def __init__(self, steps: int, samples: int, eta: float):
        if samples < 1:
            raise InputError(f"samples must be >= 1, got {samples}")
        if not 0 <= eta <= 1:
            raise InputError(f"eta must be in [0, 1], got {eta}")
        self.steps, self.samples, self.eta = steps, samples, eta

    @property
    def planned_nfe(self) -> int:
        return self.nfe_per_step * self.steps * self.samples

    def times(self, prior: DiffusionPrior) -> list[int]:
        """The time steps a run takes, descending: `steps` spread over the prior's whole schedule."""
        return timesteps(prior, self.steps)

    def nfe(self, steps: int) -> int:
        """Network evaluations of a run of `steps` steps (all chains)."""
        return self.nfe_per_step * steps * self.samples
