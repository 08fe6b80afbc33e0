"""Registers the built-in samplers with medrecon (entry point `samplers`)."""

import medrecon
from medrecon_samplers.classical import AdjointSampler, ADMMSampler, CGSampler, FBPSampler


@medrecon.hookimpl
def medrecon_samplers():
    yield medrecon.SamplerSpec(
        name="adjoint",
        factory=AdjointSampler,
        summary="x = A^H y: zero-filled MRI, unfiltered back-projection; the simplest baseline",
    )
    yield medrecon.SamplerSpec(
        name="cg",
        factory=CGSampler,
        summary="Conjugate gradient on (A^H A + lambda I) x = A^H y: CG-SENSE, Tikhonov",
    )
    yield medrecon.SamplerSpec(
        name="admm-tv",
        factory=ADMMSampler,
        summary="ADMM with a proximal prior (TV, TV along z): data consistency by CG, then the prox",
    )
    yield medrecon.SamplerSpec(
        name="fbp",
        factory=FBPSampler,
        summary="Filtered back-projection for CT (ramp filter with a choice of window)",
    )
