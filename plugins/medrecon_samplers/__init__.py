"""Built-in samplers (solvers) for medrecon."""

from medrecon_samplers.classical import AdjointSampler, ADMMSampler, CGSampler, FBPSampler
from medrecon_samplers.diffusion import DDS, DPS, MMPS, DiffusionMBIR, PiGDM

__all__ = [
    "DDS",
    "DPS",
    "MMPS",
    "ADMMSampler",
    "AdjointSampler",
    "CGSampler",
    "DiffusionMBIR",
    "FBPSampler",
    "PiGDM",
]
