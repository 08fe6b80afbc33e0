"""Conditional diffusion models: a network for E[x0 | x_t, y] whose physics blocks call the operator.

The network (`UnrolledPosterior`) is an unrolled optimisation with decoupled physics and learned
blocks, as in Diff-Unfolding (2025), started from the Gaussian conditioning of BCDM (Güngör,
Bilecen, Çukur 2024):

1. Bayesian conditioning. x_t = sqrt(a) x0 + sqrt(1 - a) eps says x_t / sqrt(a) is x0 plus white
   noise of variance (1 - a) / a; y = A x0 + n says y is A x0 plus noise of variance s^2. With a
   Gaussian prior x0 ~ N(0, v I) the posterior mean of x0 given both is the solution of
   (A^H A + (mu + s^2 / v) I) x = A^H y + mu x_t / sqrt(a),  mu = s^2 a / (1 - a),
   which `cg_iterations` of conjugate gradient approximate (in units of ||A||^2, so that one model
   serves operators of any scale). At large t it is a regularised least-squares fit of y, at small
   t x_t. The prior term (`prior_variance` v) matters where A sees nothing: without it (BCDM's flat
   prior, v = None) the null space of A gets x_t / sqrt(a), noise of std up to ~150 at
   t = 999, which an operator with a large null space (inpainting, super-resolution) passes on to
   the learned blocks; with it, the null space gets E[x0 | x_t] = sqrt(a) v x_t / (a v + 1 - a).
   Where A sees everything (the training operators: MRI, CT, blur) the two agree (s^2 / v is far
   below the eigenvalues 5 CG iterations resolve), so a model trained with one runs with the
   other; the shipped models are trained flat and run with v = 1 (the `conditional` prior's
   `prior_variance`).
2. `blocks` unrolled blocks, each a physics step z = x - step_k A^H (A x - y) / ||A||^2 (learned
   step size) and a learned block x = z + D(z, x_init, x_t, t), D a MONAI DiffusionModelUNet with
   three input channels and the diffusion time embedding, applied slice by slice.

The learned blocks never see the operator: only images, so at inference any linear operator, one
the model was not trained on included, plugs into the physics steps. This module is model I/O and
generic linear algebra (no physics): `medrecon train-conditional` trains and writes these models,
the `conditional` prior plugin loads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from medrecon.contracts import Operator, Problem
from medrecon.errors import InputError
from medrecon.numerics import conjugate_gradient, operator_norm
from medrecon.prior_card import build_unet, size_multiple

#: the learned block of the shipped conditional models: fully convolutional (no attention), four
#: levels (sides padded to multiples of 8), three input channels (z, x_init, x_t)
UNROLLED_ARCHITECTURE: dict[str, Any] = {
    "class": "UnrolledPosterior",
    "blocks": 3,
    "cg_iterations": 5,
    "unet": {
        "class": "DiffusionModelUNet",
        "spatial_dims": 2,
        "in_channels": 3,
        "out_channels": 1,
        "channels": [32, 48, 64, 96],
        "attention_levels": [False, False, False, False],
        "mid_block_attention": False,
        "num_res_blocks": 1,
        "norm_num_groups": 16,
        "num_head_channels": 32,
    },
}
#: the prior variance of the Gaussian conditioning (model units, images in [0, 1]): what the
#: `conditional` prior uses where neither recipe nor card give one, and what new models train with
GAUSSIAN_PRIOR_VARIANCE = 1.0
#: the floor of the noise variance in the conditioning (model units): noiseless data still leave
#: the least-squares fit a little regularised
NOISE_FLOOR = 1e-6


@dataclass
class Condition:
    """A problem as the network sees it: the operator, y, A^H y, ||A||^2 and the noise variance, all
    in the model's units; `gram` is the operator's A^H A (its own where it offers one)."""

    operator: Operator
    y: torch.Tensor
    aty: torch.Tensor
    norm2: float
    noise_var: float

    def gram(self, x: torch.Tensor) -> torch.Tensor:
        return self.operator.gram(x)

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        """A^H (A x - y) / ||A||^2."""
        return (self.gram(x) - self.aty) / self.norm2


def condition_of(problem: Problem, norm2: float | None = None) -> Condition:
    """A problem's Condition; `norm2` (||A||^2) is estimated by power iteration unless given."""
    op = problem.operator
    if not op.linear:
        raise InputError(
            f"operator {type(op).__name__} is not linear: a conditional model's physics blocks need "
            "A and its adjoint A^H"
        )
    if norm2 is None:
        norm2 = float(operator_norm(op, iterations=20)) ** 2
    if not norm2 > 0:
        raise InputError(f"operator {type(op).__name__} has norm 0: it measures nothing")
    return Condition(op, problem.y, op.adjoint(problem.y), float(norm2), float(problem.noise_std) ** 2)


class UnrolledPosterior(torch.nn.Module):
    """E[x0 | x_t, y]: BCDM's Gaussian conditioning, then `blocks` physics + learned blocks (module
    docstring). `shared` uses one learned block for all (the shipped models do not);
    `prior_variance` None is BCDM's flat prior (cards written before it existed)."""

    def __init__(
        self,
        unet: dict[str, Any],
        blocks: int = 3,
        cg_iterations: int = 5,
        shared: bool = False,
        prior_variance: float | None = None,
    ):
        super().__init__()
        if blocks < 1 or cg_iterations < 0:
            raise InputError(f"blocks must be >= 1 and cg_iterations >= 0, got {blocks}, {cg_iterations}")
        check_prior_variance(prior_variance)
        if unet.get("in_channels") != 3 or unet.get("out_channels") != 1:
            raise InputError("an UnrolledPosterior's learned block takes 3 channels and gives 1")
        count = 1 if shared else blocks
        self.learned = torch.nn.ModuleList(build_unet(unet) for _ in range(count))
        self.step = torch.nn.Parameter(torch.ones(blocks))
        self.blocks, self.cg_iterations = blocks, cg_iterations
        self.prior_variance = prior_variance
        self.multiple = size_multiple(unet)
        self.slice_batch = 0  # 0: all slices at once (training); > 0: chunks of that many (inference)

    def initial(self, x_t: torch.Tensor, abar: torch.Tensor, cond: Condition) -> torch.Tensor:
        """The Gaussian conditioning: (A^H A + (mu + s^2 / v) I) x = A^H y + mu x_t / sqrt(a) by CG
        (mu and s^2 / v in units of ||A||^2), no network."""
        noise_var = max(cond.noise_var, NOISE_FLOOR)
        mu = noise_var * float(abar / (1 - abar)) / cond.norm2
        damping = mu + (noise_var / self.prior_variance / cond.norm2 if self.prior_variance else 0.0)
        scaled = x_t / abar.sqrt()
        rhs = cond.aty / cond.norm2 + mu * scaled
        if not self.cg_iterations:
            return rhs
        return conjugate_gradient(
            lambda v: cond.gram(v) / cond.norm2 + damping * v,
            rhs,
            iterations=self.cg_iterations,
            batch_dims=1,
        )

    def forward(self, x_t: torch.Tensor, t: int, abar: torch.Tensor, cond: Condition) -> torch.Tensor:
        with torch.no_grad():
            x_init = self.initial(x_t, abar, cond)
        x = x_init
        for k in range(self.blocks):
            z = x - self.step[k] * cond.gradient(x)
            x = z + self._learned(k, torch.stack([z, x_init, x_t], dim=-3), t)
        return x

    def _learned(self, k: int, channels: torch.Tensor, t: int) -> torch.Tensor:
        """Learned block k on (..., 3, H, W), slice by slice, padded to the network's multiple."""
        network = self.learned[0 if len(self.learned) == 1 else k]
        lead, (h, w) = channels.shape[:-3], channels.shape[-2:]
        slices = channels.reshape(-1, 3, h, w)
        pad_h, pad_w = (-h) % self.multiple, (-w) % self.multiple
        padding = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
        if pad_h or pad_w:
            slices = torch.nn.functional.pad(slices, padding, mode="reflect")
        chunk = self.slice_batch or len(slices)
        outputs = []
        for start in range(0, len(slices), chunk):
            part = slices[start : start + chunk]
            steps = torch.full((len(part),), int(t), device=part.device, dtype=torch.long)
            outputs.append(network(part, steps))
        out = torch.cat(outputs)[:, 0]
        if pad_h or pad_w:
            out = out[:, padding[2] : padding[2] + h, padding[0] : padding[0] + w]
        return out.reshape(*lead, h, w)


def check_prior_variance(value: float | None) -> None:
    """None: a flat prior; otherwise a positive variance (model units)."""
    if value is not None and not value > 0:
        raise InputError(f"prior_variance must be > 0, got {value}")


def build_conditional(architecture: dict[str, Any]) -> UnrolledPosterior:
    """An UnrolledPosterior from a conditional card's architecture entry."""
    arch = dict(architecture)
    name = arch.pop("class", "UnrolledPosterior")
    if name != "UnrolledPosterior":
        raise InputError(f"unsupported conditional network class {name!r}: expected UnrolledPosterior")
    if not isinstance(arch.get("unet"), dict):
        raise InputError("a conditional card's architecture needs a 'unet' entry (the learned block)")
    try:
        return UnrolledPosterior(**arch)
    except TypeError as err:
        raise InputError(f"conditional card architecture does not fit UnrolledPosterior: {err}") from None


def min_size(architecture: dict[str, Any]) -> int:
    """The smallest slice side a conditional network takes (its learned block's size multiple)."""
    return size_multiple(architecture["unet"])
