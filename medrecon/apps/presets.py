"""Named starting points for a reconstruction: every case of `medrecon demo` with each of its
recipes (operator and noise level to simulate with, prior and sampler with their tuned settings),
as the napari widget offers them. Each is a plain recipe: it saves to the TOML that
`medrecon reconstruct --recipe` reads."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Preset:
    name: str
    #: the operator recipe table a ground-truth image is simulated with
    operator: dict
    noise_std: float
    #: the prior and sampler tables
    recipe: dict = field(default_factory=dict)
    #: "smooth": the image is made complex (MRI phase) before simulation
    phase: str = "none"


def presets() -> list[Preset]:
    """The demo's cases and methods that are medrecon recipes (external peers such as sigpy's TV
    are left out), diffusion methods first within each case."""
    from medrecon.apps.demo import cases

    out = []
    for case in cases():
        methods = sorted((m for m in case.methods if m.recipe is not None), key=lambda m: not m.diffusion)
        for method in methods:
            name = f"{case.title} - {method.label}"
            out.append(Preset(name, dict(case.operator), case.noise_std, dict(method.recipe), case.phase))
    return out


def preset_for(operator: str | None = None) -> Preset:
    """The first preset for `operator` (a measurement's), else the first one (MRI, diffusion)."""
    every = presets()
    for preset in every:
        if operator is not None and preset.operator.get("name") == operator:
            return preset
    return every[0]
