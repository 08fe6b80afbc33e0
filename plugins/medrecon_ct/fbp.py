"""Ramp filters for filtered back-projection."""

from __future__ import annotations

import math

import torch

WINDOWS = ("ramp", "shepp-logan", "cosine", "hamming", "hann")


def ramp_filter(padded: int, window: str = "ramp", *, dtype=torch.float32, device=None) -> torch.Tensor:
    """Frequency response (rfft layout, length padded // 2 + 1) of the windowed ramp filter.

    The ramp is built from its band-limited spatial kernel (h(0) = 1/4, h(n odd) = -1/(pi n)^2,
    Kak and Slaney, ch. 3), which avoids the DC offset of sampling |f| directly.
    """
    if window not in WINDOWS:
        raise ValueError(f"unknown FBP window {window!r}; choose one of {', '.join(WINDOWS)}")
    n = torch.cat([torch.arange(0, padded // 2 + 1), torch.arange(-(padded // 2) + 1, 0)]).double()
    kernel = torch.zeros(padded, dtype=torch.float64)
    kernel[0] = 0.25
    odd = n.remainder(2) == 1
    kernel[odd] = -1.0 / (math.pi * n[odd]) ** 2
    response = 2 * torch.fft.rfft(kernel).real
    freq = torch.fft.rfftfreq(padded, dtype=torch.float64)  # cycles per detector bin, 0 .. 1/2
    omega = 2 * math.pi * freq  # 0 .. pi
    if window == "shepp-logan":
        response *= torch.sinc(freq)  # sin(pi f) / (pi f)
    elif window == "cosine":
        response *= torch.cos(omega / 2)
    elif window == "hamming":
        response *= 0.54 + 0.46 * torch.cos(omega)
    elif window == "hann":
        response *= 0.5 + 0.5 * torch.cos(omega)
    return response.to(dtype=dtype, device=device)
