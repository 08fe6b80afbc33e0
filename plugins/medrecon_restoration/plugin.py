"""Registers the restoration operators with medrecon (entry point `restoration`)."""

import medrecon
from medrecon_restoration.downsample import Downsample
from medrecon_restoration.inpainting import Inpainting


@medrecon.hookimpl
def medrecon_operators():
    yield medrecon.OperatorSpec(
        name="inpainting",
        factory=Inpainting,
        summary="Missing pixels (random, lines or boxes; per slice or per volume) or a given mask",
    )
    yield medrecon.OperatorSpec(
        name="downsample",
        factory=Downsample,
        summary="Super-resolution: block average or antialiased decimation by an integer factor, 2D or 3D",
    )
