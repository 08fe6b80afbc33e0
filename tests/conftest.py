"""Shared fixtures: a fresh plugin host per test, small volumes and bundles."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import medrecon
from tests.helpers import builtin_host


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture
def host() -> medrecon.PluginHost:
    """A fresh host with the built-in plugins registered explicitly (no entry-point scan)."""
    return builtin_host()


@pytest.fixture
def phantom() -> np.ndarray:
    """A small 3D Shepp-Logan phantom, (D, H, W) = (8, 32, 32), float32 in [0, 1]."""
    from medrecon.samples import phantom_volume

    return phantom_volume((8, 32, 32))


@pytest.fixture
def mri_measurement(phantom, host) -> medrecon.Measurement:
    return medrecon.simulate(
        phantom, {"name": "mri-multicoil", "acceleration": 4}, noise_std=0.001, seed=3, host=host
    )
