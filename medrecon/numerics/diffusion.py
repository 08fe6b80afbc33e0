"""The DDPM/DDIM step arithmetic diffusion samplers share (x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps,
a_t = alpha-bar_t)."""

from __future__ import annotations

import torch


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
    """DDIM (Song, Meng, Ermon 2021): x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - s^2) eps + s z,
    s = eta * DDPM posterior std; eta = 1 is the ancestral (DDPM) step, 0 the deterministic one."""
    s = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).clamp_min(0).sqrt()
    return a_prev.sqrt() * x0 + (1 - a_prev - s**2).clamp_min(0).sqrt() * eps + s * noise
