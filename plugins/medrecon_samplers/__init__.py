"""Built-in samplers (solvers) for medrecon."""

from medrecon_samplers.classical import AdjointSampler, CGSampler

__all__ = ["AdjointSampler", "CGSampler"]
