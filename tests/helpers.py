"""Small, exact components for testing the core's contracts without the built-in physics."""

from __future__ import annotations

import torch

import medrecon

BUILTIN_PLUGINS = ("mri", "ct", "deconv", "restoration", "priors", "samplers")

#: A tiny MONAI DiffusionModelUNet (45k parameters) for tests of network priors.
TINY_UNET = {
    "spatial_dims": 2,
    "in_channels": 1,
    "out_channels": 1,
    "channels": [8, 16],
    "attention_levels": [False, True],
    "num_res_blocks": 1,
    "norm_num_groups": 8,
    "num_head_channels": 8,
}

#: A tiny fully convolutional DiffusionModelUNet (no attention, sizes padded to multiples of 4), as
#: `train-prior --native` builds them, for tests of any-size and complex priors.
TINY_CONV_UNET = {
    "spatial_dims": 2,
    "in_channels": 1,
    "out_channels": 1,
    "channels": [8, 16, 16],
    "attention_levels": [False, False, False],
    "mid_block_attention": False,
    "num_res_blocks": 1,
    "norm_num_groups": 8,
    "num_head_channels": 8,
}


def builtin_host() -> medrecon.PluginHost:
    """A fresh host with the built-in plugins registered explicitly (no entry-point scan)."""
    import importlib

    host = medrecon.PluginHost()
    for name in BUILTIN_PLUGINS:
        module = importlib.import_module(f"medrecon_{name}.plugin")
        host.register(module, name=name, distribution="medrecon", version=medrecon.__version__)
    return host


class Scale(medrecon.Operator):
    """y = c * x: linear, self-adjoint, with a trivial SVD."""

    def __init__(self, shape: tuple[int, ...] = (4, 4), c: float = 2.0):
        super().__init__()
        self.domain_shape = self.range_shape = tuple(shape)
        self.c = c

    def forward(self, x):
        return self.c * x

    def adjoint(self, y):
        return self.c * y

    @property
    def has_svd(self) -> bool:
        return True


class WrongAdjoint(Scale):
    """An operator whose adjoint is off by 1%: the adjoint test must catch it."""

    def adjoint(self, y):
        return 1.01 * self.c * y


class Ridge(medrecon.ProximalPrior):
    """R(x) = ||x||^2 / 2, whose prox is x / (1 + step)."""

    def value(self, x):
        return 0.5 * (x**2).sum()

    def prox(self, x, step):
        return x / (1 + step)


class StandardNormal(medrecon.DiffusionPrior):
    """x0 ~ N(0, I): eps(x_t, t) = sqrt(1 - abar_t) x_t exactly (x_t ~ N(0, I) for every t)."""

    def __init__(self, steps: int = 10):
        self._abar = torch.linspace(0.99, 0.01, steps)

    @property
    def alphas_cumprod(self):
        return self._abar

    def predict_eps(self, x_t, t):
        return (1 - self._abar[t]).sqrt() * x_t


class NeedsDiffusion(medrecon.Sampler):
    """Returns the Tweedie estimate at the last time step of the prior; needs a diffusion prior."""

    requires = (medrecon.LINEAR_OPERATOR, medrecon.DIFFUSION_PRIOR)

    def __init__(self, steps: int = 3):
        self.steps = steps

    def iterate(self, problem, prior, *, seed=0):
        x = problem.operator.adjoint(problem.y)
        for i in range(self.steps):
            x = prior.predict_x0(x, len(prior.alphas_cumprod) - 1)
            yield medrecon.Step(i, self.steps, x)
        return medrecon.Reconstruction(x, info={"nfe": self.steps})


class NeedsSVD(NeedsDiffusion):
    requires = (medrecon.SVD,)


class ToyPlugin:
    """A plugin object with all three hooks."""

    @medrecon.hookimpl
    def medrecon_operators(self):
        yield medrecon.OperatorSpec(name="scale", factory=Scale, summary="y = c x")

    @medrecon.hookimpl
    def medrecon_priors(self):
        yield medrecon.PriorSpec(name="ridge", factory=Ridge, summary="squared L2 norm")
        yield medrecon.PriorSpec(name="std-normal", factory=StandardNormal, summary="N(0, I)")

    @medrecon.hookimpl
    def medrecon_samplers(self):
        yield medrecon.SamplerSpec(name="needs-diffusion", factory=NeedsDiffusion, summary="test")
        yield medrecon.SamplerSpec(name="needs-svd", factory=NeedsSVD, summary="test")
