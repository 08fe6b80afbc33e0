"""Classical solvers, run through the same sampler interface as the diffusion samplers."""

from __future__ import annotations

from collections.abc import Generator

import torch

from medrecon import (
    LINEAR_OPERATOR,
    NO_PRIOR,
    InputError,
    Prior,
    Problem,
    Reconstruction,
    Sampler,
    Step,
)
from medrecon.numerics import cg_iterations


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

    With an MRI operator this is CG-SENSE (Pruessmann et al., MRM 2001). `tikhonov` is lambda, in
    units of ||A||^2; CG stops early once the residual falls below `tol` relative to ||A^H y||.
    """

    requires = (LINEAR_OPERATOR, NO_PRIOR)

    def __init__(self, iterations: int = 30, tikhonov: float = 0.0, tol: float = 1e-6):
        if iterations < 1:
            raise InputError(f"cg: iterations must be >= 1, got {iterations}")
        if tikhonov < 0:
            raise InputError(f"cg: tikhonov must be >= 0, got {tikhonov}")
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
