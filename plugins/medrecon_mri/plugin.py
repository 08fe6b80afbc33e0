"""Registers the MRI operator, its training task and the fastMRI reader with medrecon (entry point
`mri`)."""

import medrecon
from medrecon_mri.fastmri import FastMRIReader
from medrecon_mri.sense import MultiCoilMRI
from medrecon_mri.training import mri_task


@medrecon.hookimpl
def medrecon_operators():
    yield medrecon.OperatorSpec(
        name="mri-multicoil",
        factory=MultiCoilMRI,
        summary="Multi-coil Cartesian MRI (SENSE): coil maps, centered 2D FFT, sampling mask",
    )


@medrecon.hookimpl
def medrecon_training_tasks():
    yield medrecon.TaskSpec(
        name="mri",
        factory=mri_task,
        summary="Multi-coil Cartesian MRI, 4/8/12 coils, equispaced or random masks",
    )


@medrecon.hookimpl
def medrecon_readers():
    yield medrecon.ReaderSpec(
        name="fastmri",
        factory=FastMRIReader,
        summary="fastMRI multi-coil HDF5 files (kspace, ISMRMRD header, reconstruction_rss)",
    )
