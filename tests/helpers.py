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

    def svd(self):
        """V = I, U = sign(c) I, every singular value |c|."""
        sign = 1.0 if self.c >= 0 else -1.0
        return medrecon.SingularDecomposition(
            torch.full(self.domain_shape, abs(self.c)),
            v_h=lambda x: x,
            v=lambda c: c,
            u_h=lambda y: sign * y,
            u=lambda c: sign * c,
        )


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


ISMRMRD_HEADER = """<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <studyInformation><studyTime>00:00:00</studyTime></studyInformation>
  <acquisitionSystemInformation>
    <systemVendor>SIEMENS</systemVendor><systemFieldStrength_T>2.89362</systemFieldStrength_T>
    <receiverChannels>{coils}</receiverChannels>
  </acquisitionSystemInformation>
  <experimentalConditions><H1resonanceFrequency_Hz>123251815</H1resonanceFrequency_Hz></experimentalConditions>
  <encoding>
    <encodedSpace>
      <matrixSize><x>{ex}</x><y>{ey}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>{efx}</x><y>{efy}</y><z>{thick}</z></fieldOfView_mm>
    </encodedSpace>
    <reconSpace>
      <matrixSize><x>{rx}</x><y>{ry}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>{rfx}</x><y>{rfy}</y><z>{thick}</z></fieldOfView_mm>
    </reconSpace>
    <trajectory>cartesian</trajectory>
    <encodingLimits>
      <kspace_encoding_step_1><minimum>0</minimum><maximum>{ey1}</maximum><center>{eyc}</center></kspace_encoding_step_1>
    </encodingLimits>
  </encoding>
</ismrmrdHeader>
"""


def write_fastmri_file(
    path,
    *,
    slices: int = 2,
    coils: int = 4,
    encoded: tuple[int, int] = (640, 368),
    recon: tuple[int, int] = (320, 320),
    pixel_mm: float = 0.6875,
    thickness_mm: float = 5.0,
    noise_std: float = 0.0,
    seed: int = 0,
):
    """A file with the layout of a fastMRI multi-coil training file: `kspace` complex64 (slices,
    coils, readout, phase encode) on the encoded grid (readout twice oversampled), fully sampled,
    of a complex brain image (the shipped 1 mm sample resampled to `pixel_mm`, smooth phase)
    inside the recon field of view; `reconstruction_rss` made as the dataset makes it (coil
    images by centered orthonormal inverse FFT, root sum of squares, centre crop to the recon
    matrix); an ISMRMRD XML header; the dataset's file attributes. Returns the complex image on
    the encoded grid."""
    import h5py
    import numpy as np
    from scipy.ndimage import zoom

    from medrecon.numerics import ifftnc
    from medrecon.samples import brain_sample, smooth_phase

    volume, _ = brain_sample("1mm")
    middle = volume.shape[0] // 2
    brain = volume[middle - slices // 2 : middle - slices // 2 + slices]
    # resampled to the file's pixel size (smoothly: anatomy has no pixel edges), inside the recon FOV
    brain = zoom(brain, (1, 1 / pixel_mm, 1 / pixel_mm), order=3, grid_mode=True, mode="grid-constant").clip(
        0, None
    )
    from medrecon.io import centre_crop

    brain = centre_crop(brain, recon)
    image = np.zeros((slices, *encoded), np.float32)
    top, left = (encoded[0] - brain.shape[1]) // 2, (encoded[1] - brain.shape[2]) // 2
    image[:, top : top + brain.shape[1], left : left + brain.shape[2]] = brain
    image = image * np.exp(1j * smooth_phase(image.shape, seed)).astype(np.complex64)
    op = {"name": "mri-multicoil", "coils": coils, "acceleration": 1, "complex_image": True}
    m = medrecon.simulate(image, op, noise_std=noise_std, seed=seed)
    kspace = m.y.astype(np.complex64)
    coil_images = ifftnc(torch.as_tensor(kspace), (-2, -1)).numpy()
    rss = np.sqrt((np.abs(coil_images) ** 2).sum(axis=1))
    r0, c0 = (encoded[0] - recon[0]) // 2, (encoded[1] - recon[1]) // 2
    rss = rss[:, r0 : r0 + recon[0], c0 : c0 + recon[1]].astype(np.float32)
    header = ISMRMRD_HEADER.format(
        coils=coils,
        ex=encoded[0],
        ey=encoded[1],
        efx=encoded[0] * pixel_mm,
        efy=encoded[1] * pixel_mm,
        rx=recon[0],
        ry=recon[1],
        rfx=recon[0] * pixel_mm,
        rfy=recon[1] * pixel_mm,
        thick=thickness_mm,
        ey1=encoded[1] - 1,
        eyc=encoded[1] // 2,
    )
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=kspace)
        f.create_dataset("reconstruction_rss", data=rss)
        f.create_dataset("ismrmrd_header", data=header.encode())
        f.attrs["acquisition"] = "AXT2"
        f.attrs["max"] = float(rss.max())
        f.attrs["norm"] = float(np.linalg.norm(rss))
        f.attrs["patient_id"] = "synthetic"
    return image
