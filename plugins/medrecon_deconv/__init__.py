"""Built-in deconvolution operator plugin for medrecon: blur by a known or unknown kernel."""

from medrecon.numerics import clip_and_normalise as project_kernel
from medrecon_deconv.convolution import Convolution
from medrecon_deconv.kernels import gaussian_kernel, motion_kernel, random_kernels

__all__ = ["Convolution", "gaussian_kernel", "motion_kernel", "project_kernel", "random_kernels"]
