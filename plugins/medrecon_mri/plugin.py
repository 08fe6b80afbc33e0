"""Registers the MRI operators with medrecon (entry point `mri`)."""

import medrecon
from medrecon_mri.sense import MultiCoilMRI


@medrecon.hookimpl
def medrecon_operators():
    yield medrecon.OperatorSpec(
        name="mri-multicoil",
        factory=MultiCoilMRI,
        summary="Multi-coil Cartesian MRI (SENSE): coil maps, centered 2D FFT, sampling mask",
    )
