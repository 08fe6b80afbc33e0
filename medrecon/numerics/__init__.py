"""Numerics every plugin shares: adjoint test, operator norm, conjugate gradient, centered FFTs,
the DDIM step, TV and ADMM (intensity maps in `medrecon.numerics.intensity`)."""

from medrecon.numerics.admm import TVSplitState, admm_tv_step
from medrecon.numerics.diffusion import ddim_step, noise_of
from medrecon.numerics.fft import centering_modulation, fft2c, fftnc, ifft2c, ifftnc
from medrecon.numerics.linalg import (
    AdjointTestResult,
    adjoint_test,
    cg_iterations,
    clip_and_normalise,
    conjugate_gradient,
    inner,
    operator_norm,
)
from medrecon.numerics.tv import gradient, gradient_adjoint, tv_prox, tv_value

__all__ = [
    "TVSplitState",
    "admm_tv_step",
    "AdjointTestResult",
    "adjoint_test",
    "cg_iterations",
    "clip_and_normalise",
    "centering_modulation",
    "conjugate_gradient",
    "ddim_step",
    "fft2c",
    "fftnc",
    "gradient",
    "gradient_adjoint",
    "ifft2c",
    "ifftnc",
    "inner",
    "noise_of",
    "operator_norm",
    "tv_prox",
    "tv_value",
]
