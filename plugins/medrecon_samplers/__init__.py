"""Built-in samplers (solvers) for medrecon."""

from medrecon_samplers.classical import AdjointSampler, ADMMSampler, CGSampler
from medrecon_samplers.decomposed import CCDF, DDS
from medrecon_samplers.gradient_guided import DPS, MCG
from medrecon_samplers.likelihood import MMPS, PiGDM
from medrecon_samplers.mbir import DiffusionMBIR

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
    "PiGDM",
]
