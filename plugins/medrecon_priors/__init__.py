"""Built-in priors for medrecon."""

from medrecon_priors.gaussian import Gaussian, GaussianPosterior, adsn_spectrum
from medrecon_priors.tv import TotalVariation

__all__ = ["Gaussian", "GaussianPosterior", "TotalVariation", "adsn_spectrum"]
