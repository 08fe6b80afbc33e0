"""What the restoration plugin gives `medrecon train-conditional`: the `inpainting` and
`super-resolution` tasks (operators that see nothing of part of the image, unlike MRI, CT and
blur, whose A^H A has no large null space)."""

from __future__ import annotations

from medrecon import InputError, TrainingTask


def inpainting_task(missing: tuple[float, float] = (0.5, 0.8)) -> TrainingTask:
    """Random pixels, lines or 4-8 px boxes, a fraction `missing` LOW..HIGH of the pixels unseen."""
    lo, hi = missing
    if not 0 <= lo <= hi <= 0.95:
        raise InputError(
            f"inpainting task: missing must be LOW:HIGH with 0 <= LOW <= HIGH <= 0.95 (some pixels "
            f"must be seen), got {lo}:{hi}"
        )

    def draw(u):
        return {
            "name": "inpainting",
            "mask_type": TrainingTask.pick(u, ("random", "lines", "boxes")),
            "missing": round(lo + (hi - lo) * u(), 2),
            "box": TrainingTask.pick(u, (4, 8)),
            "seed": int(u() * 1000),
        }

    return TrainingTask(
        "inpainting",
        draw,
        {"operator": "inpainting", "missing": [lo, hi], "mask_type": ["random", "lines", "boxes"]},
        validation={"name": "inpainting", "missing": TrainingTask.within(0.7, lo, hi), "seed": 1},
    )


#: the factors a super-resolution task can take: divisors of 8, so that they divide the training
#: patches and the validation slices (both multiples of the shipped networks' 8)
FACTORS = (2, 4, 8)


def super_resolution_task(factors: tuple[int, ...] = (2, 4)) -> TrainingTask:
    """Block-average or antialiased decimation by one of `factors` (among 2, 4, 8); validated at
    the largest."""
    factors = tuple(int(f) for f in factors)
    if not factors or not set(factors) <= set(FACTORS):
        raise InputError(
            f"super-resolution task: factors must be among {', '.join(map(str, FACTORS))}, got {factors}"
        )

    def draw(u):
        return {
            "name": "downsample",
            "factor": TrainingTask.pick(u, factors),
            "method": TrainingTask.pick(u, ("block", "gaussian")),
        }

    return TrainingTask(
        "super-resolution",
        draw,
        {"operator": "downsample", "factor": list(factors), "method": ["block", "gaussian"]},
        validation={"name": "downsample", "factor": max(factors)},
    )
