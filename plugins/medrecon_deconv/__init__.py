"""Built-in deconvolution operator plugin for medrecon: blur by a known or unknown kernel."""

from medrecon.kernels import gaussian_kernel, motion_kernel, project_kernel
from medrecon_deconv.convolution import Convolution

__all__ = ["Convolution", "gaussian_kernel", "motion_kernel", "project_kernel"]
