"""Built-in priors for medrecon."""

from medrecon_priors.tv import TotalVariation

__all__ = ["TotalVariation"]
