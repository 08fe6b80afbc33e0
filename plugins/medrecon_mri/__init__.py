"""Built-in multi-coil MRI operator plugin for medrecon."""

from medrecon_mri.fastmri import FastMRIReader, fastmri_metrics, undersample
from medrecon_mri.masks import equispaced_mask, poisson_mask, random_mask, random_mask_2d
from medrecon_mri.sense import MultiCoilMRI

__all__ = [
    "FastMRIReader",
    "MultiCoilMRI",
    "equispaced_mask",
    "fastmri_metrics",
    "poisson_mask",
    "random_mask",
    "random_mask_2d",
    "undersample",
]
