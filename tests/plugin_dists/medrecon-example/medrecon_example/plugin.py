"""The whole of a third-party plugin: one operator, one sampler and a reader of its own file format."""

from __future__ import annotations

import torch

import medrecon


class PixelBinning(medrecon.Operator):
    """Pixel binning: the average over `factor` x `factor` blocks of each slice."""

    def __init__(self, shape: tuple[int, ...], factor: int = 2):
        super().__init__()
        if any(s % factor for s in shape[-2:]):
            raise medrecon.InputError(f"image size {shape[-2:]} is not divisible by factor {factor}")
        self.factor = factor
        self.domain_shape = tuple(shape)
        self.range_shape = (*shape[:-2], shape[-2] // factor, shape[-1] // factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.factor
        return x.unflatten(-1, (-1, f)).unflatten(-3, (-1, f)).mean(dim=(-3, -1))

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        f = self.factor
        return y.repeat_interleave(f, dim=-2).repeat_interleave(f, dim=-1) / f**2


class Landweber(medrecon.Sampler):
    """Landweber iteration x <- x + step A^H (y - A x), started from A^H y."""

    requires = (medrecon.LINEAR_OPERATOR, medrecon.NO_PRIOR)

    def __init__(self, iterations: int = 50, step: float = 1.0):
        self.iterations = iterations
        self.step = step

    def iterate(self, problem, prior, *, seed=0):
        A, y = problem.operator, problem.y
        step = self.step / medrecon.operator_norm(A) ** 2
        x = A.adjoint(y)
        for i in range(self.iterations):
            x = x + step * A.adjoint(y - A(x))
            yield medrecon.Step(i, self.iterations, x)
        return medrecon.Reconstruction(x, info={"nfe": 0})


class BinnedReader(medrecon.MeasurementReader):
    """Binned images saved as .npz (`binned`: the measurement, `noise_std`), the lab's own format;
    `factor` is the binning they were made with."""

    def __init__(self, factor: int = 2):
        self.factor = factor

    def accepts(self, path):
        return str(path).endswith(".npz")

    def read(self, path):
        import numpy as np

        with np.load(path) as data:
            y, noise = data["binned"].astype(np.float32), float(data["noise_std"])
        shape = [*y.shape[:-2], y.shape[-2] * self.factor, y.shape[-1] * self.factor]
        operator = medrecon.ComponentRecipe("pixel-binning", {"shape": shape, "factor": self.factor})
        return medrecon.Measurement(y=y, operator=operator, noise_std=noise, source=path)


@medrecon.hookimpl
def medrecon_readers():
    yield medrecon.ReaderSpec(name="binned-npz", factory=BinnedReader, summary="Binned images (.npz)")


@medrecon.hookimpl
def medrecon_operators():
    yield medrecon.OperatorSpec(
        name="pixel-binning", factory=PixelBinning, summary="2D pixel binning (block average)"
    )


@medrecon.hookimpl
def medrecon_samplers():
    yield medrecon.SamplerSpec(name="landweber", factory=Landweber, summary="Landweber gradient iterations")
