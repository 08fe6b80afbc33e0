"""One warm-started ADMM iteration for data consistency with TV along chosen axes (ADMM-TV-z).

    min_x 1/2 ||A x - y||^2 + gamma/2 ||x - anchor||^2 + weight ||D x||_1

with the splitting w = D x (D: forward differences along `axes`, e.g. z only for volumes):
    x <- CG on (A^H A + rho D^T D + gamma I) x = A^H y + gamma anchor + rho D^T (w - u)
    w <- soft-threshold(D x + u, weight / rho);  u <- u + D x - w
The dual state (w, u) lives across calls: DiffusionMBIR and DDS run one iteration per diffusion step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from medrecon.numerics.linalg import conjugate_gradient
from medrecon.numerics.tv import gradient, gradient_adjoint


@dataclass
class TVSplitState:
    """The ADMM auxiliary and scaled dual variables, warm-started across iterations."""

    w: torch.Tensor | None = None
    u: torch.Tensor | None = None


def admm_tv_step(
    gram: Callable[[torch.Tensor], torch.Tensor],
    aty: torch.Tensor,
    x: torch.Tensor,
    state: TVSplitState,
    *,
    weight: float,
    rho: float,
    axes: Sequence[int] = (-3,),
    cg_iterations: int = 5,
    gamma: float = 0.0,
    anchor: torch.Tensor | None = None,
    batch_dims: int = 0,
) -> torch.Tensor:
    """One ADMM iteration from `x`; updates `state` in place and returns the new x."""
    if state.w is None:
        state.w = gradient(x, axes)
        state.u = torch.zeros_like(state.w)

    def system(v: torch.Tensor) -> torch.Tensor:
        out = gram(v) + rho * gradient_adjoint(gradient(v, axes), axes)
        return out + gamma * v if gamma else out

    rhs = aty + rho * gradient_adjoint(state.w - state.u, axes)
    if gamma:
        rhs = rhs + gamma * anchor
    x = conjugate_gradient(system, rhs, x, iterations=cg_iterations, batch_dims=batch_dims)
    dx = gradient(x, axes)
    v = dx + state.u
    state.w = torch.sgn(v) * (v.abs() - weight / rho).clamp_min(0)  # complex too: shrinks |v|
    state.u = state.u + dx - state.w
    return x
