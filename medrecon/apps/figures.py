"""PNG figures of the demo: one row per case, the middle slice of each volume."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medrecon.io import atomic_path


def measurement_view(y: np.ndarray, operator: str) -> tuple[np.ndarray, str]:
    """A 2D picture of a measurement's middle slice, and its caption."""
    y = np.asarray(y)
    middle = y[y.shape[0] // 2] if y.ndim >= 3 else y
    if np.iscomplexobj(middle):  # MRI (coils, H, W): k-space of the first coil, log magnitude
        return np.log1p(np.abs(middle[0]) * 100), "k-space, coil 1 (log)"
    if operator.startswith("ct"):
        return middle, "sinogram (views x detectors)"
    return middle, "measurement"


def case_figure(
    path: str | Path,
    title: str,
    truth: np.ndarray,
    measurement: tuple[np.ndarray, str],
    panels: list[tuple[str, np.ndarray]],
    *,
    error_of: tuple[str, np.ndarray],
    std: np.ndarray | None = None,
    kernels: list[tuple[str, np.ndarray]] = (),
) -> Path:
    """Ground truth | measurement | each reconstruction | |error| of `error_of` | std | kernels.

    Slices of RAS volumes ((D, H, W) = (S, A, R) indices) are drawn with anterior up and the
    patient's right on the right (neurological convention, said in the caption); the error panel
    has a colour bar in the image's units."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    middle = truth.shape[0] // 2
    lo, hi = float(truth.min()), float(truth.max())
    # (label, image, colour map, limits, anatomy: drawn upright)
    images = [("ground truth", truth[middle], "gray", (lo, hi), True)]
    images.append((measurement[1], measurement[0], "gray", None, False))
    images += [(label, image[middle], "gray", (lo, hi), True) for label, image in panels]
    error = np.abs(error_of[1][middle] - truth[middle])
    error_label = f"|error| {error_of[0]}"
    images.append((error_label, error, "magma", (0.0, (hi - lo) * 0.25), True))
    if std is not None:
        images.append(("posterior std", std[middle], "viridis", None, True))
    images += [(label, kernel, "gray", None, False) for label, kernel in kernels]
    fig, axes = plt.subplots(1, len(images), figsize=(2.3 * len(images), 2.8), squeeze=False)
    for ax, (label, image, cmap, limits, anatomy) in zip(axes[0], images, strict=True):
        vmin, vmax = limits if limits else (None, None)
        shown = ax.imshow(
            image,
            cmap=cmap,
            vmin=vmin,
            vmax=vmax,
            origin="lower" if anatomy else "upper",  # row index = anterior: anterior up
            aspect="auto" if label.startswith("sino") else None,
        )
        if label == error_label:
            bar = fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.03)
            bar.ax.tick_params(labelsize=6)
        ax.set_title(label, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{title} (slice {middle}; anterior up, patient's right on the right)", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
