"""The `conditional` prior: a learned posterior model E[x0 | x_t, y] (BCDM, Diff-Unfolding) from its card.

The card (written by `medrecon train-conditional`) says which method it is, the network
(`medrecon.conditional.UnrolledPosterior`), the schedule, intensity convention, pixel spacing, and
the operators and noise levels it was trained on. A run on an operator outside that list is
allowed, since the physics blocks call whatever operator is given, and warned about.
"""

from __future__ import annotations

import logging

import torch

from medrecon import ConditionalPrior, InputError, Problem
from medrecon.conditional import Condition, build_conditional, condition_of, min_size
from medrecon.prior_card import schedule_table
from medrecon_priors.network import load_card, load_weights

log = logging.getLogger(__name__)


class Conditional(ConditionalPrior, torch.nn.Module):
    """A conditional diffusion model: weights by shipped name ("diff-unfolding": trained across
    MRI 4-8x, sparse-view and limited-angle CT and blur; "bcdm-mri": MRI 4-8x only) or by path to
    its card. Volumes are taken slice by slice along their first axis (D), `slice_batch` slices
    per network call; the physics blocks act on the whole volume through the operator."""

    def __init__(self, weights: str = "diff-unfolding", slice_batch: int = 8):
        torch.nn.Module.__init__(self)
        if slice_batch < 1:
            raise InputError(f"slice_batch must be >= 1, got {slice_batch}")
        card, card_path = load_card(weights)
        if card.get("kind") != "conditional":
            raise InputError(
                f"weights {weights!r} are an unconditional prior card, not a conditional model: use them "
                "with prior 'diffusion', or give a card written by medrecon train-conditional"
            )
        self.network = build_conditional(card["architecture"]).eval()
        self.network.slice_batch = slice_batch
        load_weights(self.network, card_path.parent / card["weights"], card_path)
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
