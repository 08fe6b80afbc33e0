"""Classical solvers, run through the same sampler interface as the diffusion samplers."""

from __future__ import annotations

from collections.abc import Generator

import torch

from medrecon import (
    LINEAR_OPERATOR,
    NO_PRIOR,
    PROXIMAL_PRIOR,
    InputError,
    Prior,
    Problem,
    Reconstruction,
    Sampler,
    Step,
)
from medrecon.numerics import cg_iterations, conjugate_gradient, operator_norm


class AdjointSampler(Sampler):
    """x = A^H y (zero-filled for MRI with coil combination by the coil maps)."""

    requires = (LINEAR_OPERATOR, NO_PRIOR)

    def iterate(
        self, problem: Problem, prior: Prior | None, *, seed: int = 0
    ) -> Generator[Step, None, Reconstruction]:
        x = problem.operator.adjoint(problem.y)
        yield Step(0, 1, x)
        return Reconstruction(x, info={"nfe": 0, "sampler": "adjoint"})


class CGSampler(Sampler):
    """Least squares with Tikhonov damping by conjugate gradient: (A^H A + lambda I) x = A^H y.

    With an MRI operator this is CG-SENSE (Pruessmann et al., MRM 2001). `tikhonov` is lambda, an
    absolute weight in the units of A^H A; CG stops early once the residual falls below `tol`
    relative to ||A^H y||.
    """

    requires = (LINEAR_OPERATOR, NO_PRIOR)

    def __init__(self, iterations: int = 30, tikhonov: float = 0.0, tol: float = 1e-6):
        if iterations < 1:
            raise InputError(f"cg: iterations must be >= 1, got {iterations}")
        if not tikhonov >= 0:
            raise InputError(f"cg: tikhonov must be >= 0, got {tikhonov}")
        if not tol >= 0:
            raise InputError(f"cg: tol must be >= 0 (a relative residual; 0 runs every iteration), got {tol}")
        self.iterations = iterations
        self.tikhonov = tikhonov
        self.tol = tol

    def iterate(
        self, problem: Problem, prior: Prior | None, *, seed: int = 0
    ) -> Generator[Step, None, Reconstruction]:
        op = problem.operator
        b = op.adjoint(problem.y)

        def normal(x: torch.Tensor) -> torch.Tensor:
            return op.gram(x) + self.tikhonov * x

        x = torch.zeros_like(b)
        done = 0
        for done, x in enumerate(cg_iterations(normal, b, iterations=self.iterations, tol=self.tol), start=1):
            yield Step(done - 1, self.iterations, x)
        info = {"nfe": 0, "sampler": "cg", "cg_iterations": done}
        return Reconstruction(x, info=info)


class ADMMSampler(Sampler):
    """ADMM for 1/2 ||A x - y||^2 + R(x) with the splitting z = x (Boyd et al. 2011, sec. 3.1).

    x-update: (A^H A + rho I) x = A^H y + rho (z - u) by `cg_iterations` of warm-started CG;
    z-update: z = prox_{R / rho}(x + u); u += x - z. Works with any proximal prior (`tv` for
    ADMM-TV, or TV along z). `rho` is relative to ||A||^2, estimated once by power iteration.
    """

    requires = (LINEAR_OPERATOR, PROXIMAL_PRIOR)

    def __init__(self, iterations: int = 100, rho: float = 0.05, cg_iterations: int = 5):
        if iterations < 1 or cg_iterations < 1:
            raise InputError(
                f"admm-tv: iterations and cg_iterations must be >= 1, got {iterations}, {cg_iterations}"
            )
        if rho <= 0:
            raise InputError(f"admm-tv: rho must be > 0, got {rho}")
        self.iterations = iterations
        self.rho = rho
        self.cg_iterations = cg_iterations

    def iterate(
        self, problem: Problem, prior: Prior | None, *, seed: int = 0
    ) -> Generator[Step, None, Reconstruction]:
        op = problem.operator
        rho = self.rho * operator_norm(op, iterations=20) ** 2
        aty = op.adjoint(problem.y)
        x = aty / max(rho, 1e-12)
        z, u = x.clone(), torch.zeros_like(x)

        def normal(v: torch.Tensor) -> torch.Tensor:
            return op.gram(v) + rho * v

        for i in range(self.iterations):
            x = conjugate_gradient(normal, aty + rho * (z - u), x, iterations=self.cg_iterations)
            z = prior.prox(x + u, 1.0 / rho)
            u = u + x - z
            yield Step(i, self.iterations, z)
        return Reconstruction(z, info={"nfe": 0, "sampler": "admm-tv", "rho": rho})
