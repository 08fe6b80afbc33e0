"""Registers the CT operator, its filtered back-projection sampler and its training tasks with
medrecon (entry point `ct`)."""

import medrecon
from medrecon_ct.parallel import ParallelBeamCT
from medrecon_ct.sampler import FBPSampler
from medrecon_ct.training import ct_limited_task, ct_sparse_task


@medrecon.hookimpl
def medrecon_operators():
    yield medrecon.OperatorSpec(
        name="ct-parallel",
        factory=ParallelBeamCT,
        summary="2D parallel-beam CT per slice (Joseph, exact adjoint, FBP): sparse view, limited angle",
    )


@medrecon.hookimpl
def medrecon_samplers():
    yield medrecon.SamplerSpec(
        name="fbp",
        factory=FBPSampler,
        summary="Filtered back-projection for CT (ramp filter with a choice of window)",
    )


@medrecon.hookimpl
def medrecon_training_tasks():
    yield medrecon.TaskSpec(
        name="ct-sparse",
        factory=ct_sparse_task,
        summary="Sparse-view parallel-beam CT (views over 180 degrees)",
    )
    yield medrecon.TaskSpec(
        name="ct-limited", factory=ct_limited_task, summary="Limited-angle parallel-beam CT (1-degree views)"
    )
