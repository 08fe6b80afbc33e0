"""Registers the CT operators with medrecon (entry point `ct`)."""

import medrecon
from medrecon_ct.parallel import ParallelBeamCT


@medrecon.hookimpl
def medrecon_operators():
    yield medrecon.OperatorSpec(
        name="ct-parallel",
        factory=ParallelBeamCT,
        summary="2D parallel-beam CT per slice (Joseph, exact adjoint, FBP): sparse view, limited angle",
    )
