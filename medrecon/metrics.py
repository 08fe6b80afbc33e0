"""Image quality metrics (PSNR, SSIM) through monai.metrics, on the data range of the reference.

Complex images (with phase) are compared by their magnitudes."""

from __future__ import annotations

import numpy as np
import torch


def magnitude(a) -> np.ndarray:
    """A float32 array: the values of a real array, the magnitudes of a complex one."""
    a = np.asarray(a)
    return (np.abs(a) if np.iscomplexobj(a) else a).astype(np.float32)


def _as_batch(a) -> torch.Tensor:
    return torch.as_tensor(magnitude(a))[None, None]  # (B=1, C=1, ...spatial)


def psnr(reference, estimate) -> float:
    """PSNR in dB with the reference's max - min as the peak."""
    from monai.metrics import PSNRMetric

    ref, est = _as_batch(reference), _as_batch(estimate)
    peak = float(ref.max() - ref.min()) or 1.0
    return float(PSNRMetric(max_val=peak)(est - ref.min(), ref - ref.min()).mean())


def ssim(reference, estimate) -> float:
    """SSIM (2D per slice for volumes, averaged) with the reference's data range."""
    from monai.metrics import SSIMMetric

    ref, est = magnitude(reference), magnitude(estimate)
    if ref.ndim == 2:
        ref, est = ref[None], est[None]
    data_range = float(ref.max() - ref.min()) or 1.0
    win = min(11, *ref.shape[-2:])  # the usual 11-pixel window, odd and no larger than the image
    win -= 1 - win % 2
    metric = SSIMMetric(spatial_dims=2, data_range=data_range, win_size=win)
    r = torch.as_tensor(ref)[:, None]
    e = torch.as_tensor(est)[:, None]
    return float(metric(e, r).mean())


def relative_error(reference, estimate) -> float:
    """||estimate - reference|| / ||reference|| (e.g. an estimated blur kernel against the true one)."""
    reference, estimate = np.asarray(reference, dtype=np.float64), np.asarray(estimate, dtype=np.float64)
    return float(np.linalg.norm(estimate - reference) / np.linalg.norm(reference))
