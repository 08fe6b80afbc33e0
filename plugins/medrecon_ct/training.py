"""What the CT plugin gives `medrecon train-conditional`: the `ct-sparse` (few views over 180
degrees) and `ct-limited` (1-degree views over a limited range) tasks."""

from __future__ import annotations

from medrecon import InputError, TrainingTask


def ct_sparse_task(views: tuple[int, int] = (6, 36)) -> TrainingTask:
    """Parallel-beam CT with `views` LOW..HIGH views over 180 degrees."""
    lo, hi = views
    if not 1 <= lo <= hi:
        raise InputError(f"ct-sparse task: views must be LOW:HIGH with 1 <= LOW <= HIGH, got {lo}:{hi}")
    return TrainingTask(
        "ct-sparse",
        lambda u: {"name": "ct-parallel", "views": int(lo + (hi - lo + 1) * u())},
        {"operator": "ct-parallel", "views": [lo, hi]},
        validation={"name": "ct-parallel", "views": TrainingTask.within(12, lo, hi)},
    )


def ct_limited_task(angle_span: tuple[float, float] = (60.0, 150.0)) -> TrainingTask:
    """Parallel-beam CT, one view per degree over 0..span, span LOW..HIGH degrees."""
    lo, hi = angle_span
    if not 0 < lo <= hi <= 180:
        raise InputError(f"ct-limited task: angle_span must be LOW:HIGH in (0, 180], got {lo}:{hi}")
    return TrainingTask(
        "ct-limited",
        lambda u: {
            "name": "ct-parallel",
            "angle_range": [0.0, float(round(lo + (hi - lo) * u()))],
            "angle_step": 1.0,
        },
        {"operator": "ct-parallel", "angle_range_degrees": [lo, hi], "angle_step": 1.0},
        validation={
            "name": "ct-parallel",
            "angle_range": [0.0, TrainingTask.within(100.0, lo, hi)],
            "angle_step": 1.0,
        },
    )
