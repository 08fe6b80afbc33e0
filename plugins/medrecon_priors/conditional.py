"""The `conditional` prior: a learned posterior model E[x0 | x_t, y] (BCDM, Diff-Unfolding) from its card.

The card (written by `medrecon train-conditional`) says which method it is, the network
(`medrecon.conditional.UnrolledPosterior`), the schedule, intensity convention, pixel spacing, and
the operators and noise levels it was trained on. A run on an operator outside that list is
allowed, since the physics blocks call whatever operator is given, and warned about.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch

from medrecon import ConditionalPrior, InputError, Problem
from medrecon.conditional import (
    GAUSSIAN_PRIOR_VARIANCE,
    Condition,
    build_conditional,
    check_prior_variance,
    condition_of,
    min_size,
)
from medrecon.prior_card import load_weights, schedule_table
from medrecon_priors.network import load_card

log = logging.getLogger(__name__)


class Conditional(ConditionalPrior, torch.nn.Module):
    """A conditional diffusion model: weights by shipped name ("diff-unfolding": trained across
    MRI 4-8x, sparse-view and limited-angle CT and blur; "bcdm-mri": MRI 4-8x only) or by path to
    its card. Volumes are taken slice by slice along their first axis (D), `slice_batch` slices
    per network call; the physics blocks act on the whole volume through the operator.

    `conditioning` is how the network's start combines x_t and y: "gaussian" (default) with a
    prior N(0, v), v = `prior_variance` (model units, images in [0, 1]; None: the card's, the
    value it was trained with, or else 1), or "flat", BCDM's own. The shipped models were trained
    flat; on their training operators v = 1 gives the same images (measured: equal to 0.01 dB on
    the demo's MRI, CT and blur cases), and on operators that see nothing of part of the image
    (super-resolution, inpainting) it keeps x_t / sqrt(a), noise of std ~150 at t = 999, out of
    that part."""

    def __init__(
        self,
        weights: str = "diff-unfolding",
        slice_batch: int = 8,
        conditioning: Literal["gaussian", "flat"] = "gaussian",
        prior_variance: float | None = None,
    ):
        torch.nn.Module.__init__(self)
        if slice_batch < 1:
            raise InputError(f"slice_batch must be >= 1, got {slice_batch}")
        if conditioning not in ("gaussian", "flat"):
            raise InputError(f"conditioning must be 'gaussian' or 'flat', got {conditioning!r}")
        if conditioning == "flat" and prior_variance is not None:
            raise InputError("prior_variance applies to conditioning = 'gaussian'; 'flat' has none")
        check_prior_variance(prior_variance)
        card, card_path = load_card(weights)
        if card.get("kind") != "conditional":
            raise InputError(
                f"weights {weights!r} are an unconditional prior card, not a conditional model: use them "
                "with prior 'diffusion', or give a card written by medrecon train-conditional"
            )
        self.network = build_conditional(card["architecture"]).eval()
        self.network.slice_batch = slice_batch
        if conditioning == "flat":
            self.network.prior_variance = None
        else:  # the recipe's, else the one the network was trained with (its card's), else the default
            self.network.prior_variance = (
                prior_variance or self.network.prior_variance or GAUSSIAN_PRIOR_VARIANCE
            )
        load_weights(self.network, card_path.parent / card["weights"], card_path)
        self.network_passes = int(self.network.blocks)
        self.register_buffer("_abar", schedule_table(card["schedule"]))
        intensity = card.get("intensity", {})
        self.data_range = tuple(intensity.get("data_range", (-1.0, 1.0)))
        self.background = intensity.get("background")
        self.complex_parts = bool(intensity.get("complex", False))
        spacing = card.get("pixel_spacing_mm")
        self.pixel_spacing = None if spacing is None else tuple(spacing)
        self.slice_batch = slice_batch
        self.min_size = int(card.get("min_size") or min_size(card["architecture"]))
        self.card = {"name": card_path.stem, **card}

    @property
    def method(self) -> str:
        return str(self.card.get("method", ""))

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return self._abar

    def condition(self, problem: Problem) -> Condition:
        op = problem.operator
        if op.domain_dtype.is_complex:
            raise InputError(
                f"conditional model {self.card['name']!r} was trained on real images; the operator "
                "takes complex ones: reconstruct with complex_image = false, or use prior 'diffusion'"
            )
        h, w = op.domain_shape[-2:]
        if min(h, w) < self.min_size:
            raise InputError(
                f"slices of {h} x {w} pixels are too small for conditional model {self.card['name']!r}: "
                f"it needs at least {self.min_size} x {self.min_size}"
            )
        trained = self.card.get("operator_classes") or []
        name = type(op).__name__
        if trained and name not in trained:
            log.warning(
                "conditional model %r was trained on %s, not on %s: its physics blocks take any linear "
                "operator, but this one is outside its training",
                self.card["name"],
                ", ".join(trained),
                name,
            )
        return condition_of(problem)

    def predict_x0(self, x_t: torch.Tensor, t: int, condition: Condition) -> torch.Tensor:
        with torch.no_grad():
            return self.network(x_t, int(t), self._abar[int(t)], condition)
