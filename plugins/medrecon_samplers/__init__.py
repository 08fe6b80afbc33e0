"""Built-in samplers (solvers) for medrecon."""

from medrecon_samplers.classical import AdjointSampler, ADMMSampler, CGSampler, FBPSampler

__all__ = ["ADMMSampler", "AdjointSampler", "CGSampler", "FBPSampler"]
