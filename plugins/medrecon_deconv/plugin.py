"""Registers the deconvolution operator with medrecon (entry point `deconv`)."""

import medrecon
from medrecon_deconv.convolution import Convolution
from medrecon_deconv.training import blur_kernels, blur_task


@medrecon.hookimpl
def medrecon_operators():
    yield medrecon.OperatorSpec(
        name="blind-deconv",
        factory=Convolution,
        summary="Blur by a 2D/3D kernel (FFT, zero or periodic boundary); the kernel may be unknown",
    )


@medrecon.hookimpl
def medrecon_training_tasks():
    yield medrecon.TaskSpec(
        name="blur", factory=blur_task, summary="Known-kernel motion / Gaussian blur, 5-9 px"
    )


@medrecon.hookimpl
def medrecon_datasets():
    yield medrecon.DatasetSpec(
        name="blur-kernels",
        factory=blur_kernels,
        summary="Random blur kernels (motion, Gaussian) as images: the kernel prior of blind-dps",
    )
