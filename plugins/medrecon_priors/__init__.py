"""Built-in priors for medrecon."""

from medrecon.prior_card import save_prior
from medrecon_priors.gaussian import Gaussian, GaussianPosterior, adsn_spectrum
from medrecon_priors.network import Diffusion, NetworkPrior, load_prior
from medrecon_priors.tv import TotalVariation

__all__ = [
    "Diffusion",
    "Gaussian",
    "GaussianPosterior",
    "NetworkPrior",
    "TotalVariation",
    "adsn_spectrum",
    "load_prior",
    "save_prior",
]
