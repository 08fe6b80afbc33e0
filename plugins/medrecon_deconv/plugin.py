"""Registers the deconvolution operator with medrecon (entry point `deconv`)."""

import medrecon
from medrecon_deconv.convolution import Convolution


@medrecon.hookimpl
def medrecon_operators():
    yield medrecon.OperatorSpec(
        name="blind-deconv",
        factory=Convolution,
        summary="Blur by a 2D/3D kernel (FFT, zero or periodic boundary); the kernel may be unknown",
    )
