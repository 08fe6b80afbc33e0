"""Built-in CT operator plugin for medrecon: 2D parallel beam, sparse view and limited angle, and
its filtered back-projection sampler."""

from medrecon_ct.parallel import ParallelBeamCT, parallel_angles
from medrecon_ct.sampler import FBPSampler

__all__ = ["FBPSampler", "ParallelBeamCT", "parallel_angles"]
