"""Registers the restoration operators and their training tasks with medrecon (entry point `restoration`)."""

import medrecon
from medrecon_restoration.downsample import Downsample
from medrecon_restoration.inpainting import Inpainting
from medrecon_restoration.training import inpainting_task, super_resolution_task


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


@medrecon.hookimpl
def medrecon_training_tasks():
    yield medrecon.TaskSpec(
        name="inpainting", factory=inpainting_task, summary="Missing pixels, lines or boxes, 50-80% unseen"
    )
    yield medrecon.TaskSpec(
        name="super-resolution",
        factory=super_resolution_task,
        summary="Block-average or antialiased decimation by 2 or 4",
    )
