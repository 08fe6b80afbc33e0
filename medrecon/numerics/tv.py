"""Finite differences and total variation: values and proximal maps, along any set of axes."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def gradient(x: torch.Tensor, axes: Sequence[int]) -> torch.Tensor:
    """Forward differences along `axes`, stacked first: (len(axes), *x.shape); zero at the far end
    (Neumann boundary)."""
    out = torch.zeros((len(axes), *x.shape), dtype=x.dtype, device=x.device)
    for i, axis in enumerate(axes):
        n = x.shape[axis]
        out[i].narrow(axis, 0, n - 1).copy_(x.narrow(axis, 1, n - 1) - x.narrow(axis, 0, n - 1))
    return out


def gradient_adjoint(g: torch.Tensor, axes: Sequence[int]) -> torch.Tensor:
    """The adjoint of `gradient` (minus the divergence)."""
    out = torch.zeros(g.shape[1:], dtype=g.dtype, device=g.device)
    for i, axis in enumerate(axes):
        n = out.shape[axis]
        d = g[i].narrow(axis, 0, n - 1)
        out.narrow(axis, 0, n - 1).sub_(d)
        out.narrow(axis, 1, n - 1).add_(d)
    return out


def tv_value(x: torch.Tensor, axes: Sequence[int], isotropic: bool = False) -> torch.Tensor:
    """Total variation: sum of |differences| (anisotropic) or of per-voxel gradient norms (isotropic)."""
    g = gradient(x, axes).abs()
    return g.pow(2).sum(0).sqrt().sum() if isotropic else g.sum()


def _project(p: torch.Tensor, isotropic: bool) -> torch.Tensor:
    """Onto the dual unit ball: |p_i| <= 1 per component, or per voxel for the isotropic norm."""
    if isotropic:
        return p / p.abs().pow(2).sum(0, keepdim=True).sqrt().clamp_min(1.0)
    return p.clamp(-1.0, 1.0)


def tv_prox(
    b: torch.Tensor,
    weight: float,
    axes: Sequence[int],
    *,
    isotropic: bool = False,
    iterations: int = 50,
) -> torch.Tensor:
    """argmin_x 1/2 ||x - b||^2 + weight * TV(x), by the fast gradient projection on the dual
    (Beck and Teboulle, IEEE TIP 2009): x = b - weight * D^T p with p in the dual unit ball."""
    if weight <= 0:
        return b.clone()
    step = 1.0 / (4.0 * len(axes) * weight)  # 1 / (weight * ||D||^2), ||D||^2 <= 4 per axis
    p = torch.zeros((len(axes), *b.shape), dtype=b.dtype, device=b.device)
    r, t = p, 1.0
    for _ in range(iterations):
        x = b - weight * gradient_adjoint(r, axes)
        p_next = _project(r + step * gradient(x, axes), isotropic)
        t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
        r = p_next + ((t - 1) / t_next) * (p_next - p)
        p, t = p_next, t_next
    return b - weight * gradient_adjoint(p, axes)
