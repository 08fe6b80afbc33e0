"""Registers the built-in samplers with medrecon (entry point `samplers`)."""

import medrecon
from medrecon_samplers.blind import BlindDDS, BlindDPS, BlindTV
from medrecon_samplers.classical import AdjointSampler, ADMMSampler, CGSampler
from medrecon_samplers.conditional import BCDM, DiffUnfolding
from medrecon_samplers.decomposed import CCDF, DDS
from medrecon_samplers.gradient_guided import DPS, MCG
from medrecon_samplers.likelihood import MMPS, PiGDM
from medrecon_samplers.mbir import DiffusionMBIR

SAMPLERS = (
    (
        "adjoint",
        AdjointSampler,
        "x = A^H y: zero-filled MRI, unfiltered back-projection; the simplest baseline",
    ),
    ("cg", CGSampler, "Conjugate gradient on (A^H A + lambda I) x = A^H y: CG-SENSE, Tikhonov"),
    (
        "admm-tv",
        ADMMSampler,
        "ADMM with a proximal prior (TV, TV along z): data consistency by CG, then the prox",
    ),
    ("dps", DPS, "Diffusion posterior sampling (Chung et al. 2023): gradient of ||y - A x0_hat||"),
    ("pigdm", PiGDM, "Pseudoinverse-guided diffusion (Song et al. 2023) for noisy measurements"),
    ("mmps", MMPS, "Moment-matching posterior sampling (Rozet et al. 2024): Tweedie covariance, VJPs, CG"),
    (
        "diffusion-mbir",
        DiffusionMBIR,
        "DiffusionMBIR (Chung et al. 2023): slice-wise diffusion + ADMM-TV along z",
    ),
    ("mcg", MCG, "Manifold-constrained gradient (Chung et al. 2022): gradient step, then projection"),
    (
        "ccdf",
        CCDF,
        "Come-closer-diffuse-faster (Chung et al. 2022): diffuse a classical estimate, short reverse",
    ),
    ("dds", DDS, "Decomposed diffusion sampling (Chung et al. 2024): Tweedie, CG data consistency, DDIM"),
    ("bcdm", BCDM, "BCDM (Gungor et al. 2024): ancestral sampling of a task-trained conditional model"),
    (
        "diff-unfolding",
        DiffUnfolding,
        "Diff-Unfolding (2025): DDIM with a conditional model whose physics blocks take any operator",
    ),
    (
        "blind-dps",
        BlindDPS,
        "BlindDPS (Chung et al. 2023): image and blur kernel diffused jointly, each with its own prior",
    ),
    (
        "blind-dds",
        BlindDDS,
        "Blind DDS: diffusion EM, DDS's data-consistency step with the current kernel, then a kernel fit",
    ),
    (
        "blind-tv",
        BlindTV,
        "Blind deconvolution by alternating TV image (ADMM) and projected-gradient kernel updates",
    ),
)


@medrecon.hookimpl
def medrecon_samplers():
    for name, factory, summary in SAMPLERS:
        yield medrecon.SamplerSpec(name=name, factory=factory, summary=summary)
