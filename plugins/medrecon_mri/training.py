"""What the MRI plugin gives `medrecon train-conditional`: the `mri` task (multi-coil Cartesian)."""

from __future__ import annotations

from medrecon import InputError, TrainingTask


def mri_task(acceleration: tuple[float, float] = (4.0, 8.0)) -> TrainingTask:
    """4, 8 or 12 coils, equispaced or random line masks at `acceleration` LOW..HIGH."""
    lo, hi = acceleration
    if not 1 <= lo <= hi:
        raise InputError(f"mri task: acceleration must be LOW:HIGH with 1 <= LOW <= HIGH, got {lo}:{hi}")

    def draw(u):
        return {
            "name": "mri-multicoil",
            "coils": TrainingTask.pick(u, (4, 8, 12)),
            "acceleration": round(lo + (hi - lo) * u(), 1),
            "mask_type": TrainingTask.pick(u, ("equispaced", "random")),
            "center_fraction": 0.08,
            "seed": int(u() * 1000),
        }

    ranges = {"acceleration": [lo, hi], "coils": [4, 8, 12], "mask_type": ["equispaced", "random"]}
    return TrainingTask(
        "mri",
        draw,
        {"operator": "mri-multicoil", **ranges},
        validation={
            "name": "mri-multicoil",
            "coils": 8,
            "acceleration": TrainingTask.within(6.0, lo, hi),
            "seed": 0,
        },
    )
