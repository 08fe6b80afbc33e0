"""Built-in samplers (solvers) for medrecon."""

from medrecon_samplers.classical import AdjointSampler, ADMMSampler, CGSampler, FBPSampler
from medrecon_samplers.diffusion import CCDF, DDS, DPS, MCG, MMPS, DiffusionMBIR, PiGDM

__all__ = [
    "CCDF",
    "DDS",
    "DPS",
    "MCG",
    "MMPS",
    "ADMMSampler",
    "AdjointSampler",
    "CGSampler",
    "DiffusionMBIR",
    "FBPSampler",
    "PiGDM",
]
