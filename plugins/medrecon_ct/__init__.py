"""Built-in CT operator plugin for medrecon: 2D parallel beam, sparse view and limited angle."""

from medrecon_ct.parallel import ParallelBeamCT, parallel_angles

__all__ = ["ParallelBeamCT", "parallel_angles"]
