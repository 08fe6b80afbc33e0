"""Registers the built-in priors with medrecon (entry point `priors`)."""

import medrecon
from medrecon_priors.conditional import Conditional
from medrecon_priors.gaussian import Gaussian
from medrecon_priors.network import Diffusion
from medrecon_priors.tv import TotalVariation


@medrecon.hookimpl
def medrecon_priors():
    yield medrecon.PriorSpec(
        name="tv",
        factory=TotalVariation,
        summary="Total variation (anisotropic or isotropic; all axes, within slices, or along z only)",
    )
    yield medrecon.PriorSpec(
        name="gaussian",
        factory=Gaussian,
        summary="Exact Gaussian prior (stationary ADSN / Gaussian correlation, or diagonal): the oracle",
    )
    yield medrecon.PriorSpec(
        name="diffusion",
        factory=Diffusion,
        summary="2D diffusion network (MONAI DiffusionModelUNet) from a prior card; volumes by slice",
    )
    yield medrecon.PriorSpec(
        name="conditional",
        factory=Conditional,
        summary="Conditional model E[x0 | x_t, y] (BCDM, Diff-Unfolding): physics blocks call the operator",
    )
