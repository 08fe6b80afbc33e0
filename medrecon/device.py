"""Choosing the torch device: auto, cpu, cuda or cuda:i."""

from __future__ import annotations

import re

import torch

from medrecon.errors import InputError

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' is the first CUDA device when there is one, else the CPU; cuda is checked to exist."""
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str) or not _DEVICE.match(device):
        raise InputError(f"device {device!r} is not valid: expected auto, cpu, cuda or cuda:N")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"device '{device}' was asked for, but this torch sees no CUDA device")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise InputError(
                f"device '{device}' does not exist: {torch.cuda.device_count()} CUDA device(s) present"
            )
    return torch.device(device)
