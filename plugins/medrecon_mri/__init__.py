"""Built-in multi-coil MRI operator plugin for medrecon."""

from medrecon_mri.masks import equispaced_mask
from medrecon_mri.sense import MultiCoilMRI

__all__ = ["MultiCoilMRI", "equispaced_mask"]
