"""Shared fixtures: a fresh plugin host per test, small volumes and bundles."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import medrecon


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
    import medrecon_ct.plugin
    import medrecon_deconv.plugin
    import medrecon_mri.plugin
    import medrecon_samplers.plugin

    h = medrecon.PluginHost()
    for name, module in (
        ("mri", medrecon_mri.plugin),
        ("ct", medrecon_ct.plugin),
        ("deconv", medrecon_deconv.plugin),
        ("samplers", medrecon_samplers.plugin),
    ):
        h.register(module, name=name, distribution="medrecon", version=medrecon.__version__)
    return h


@pytest.fixture
def phantom() -> np.ndarray:
    """A small 3D Shepp-Logan phantom, (D, H, W) = (8, 32, 32), float32 in [0, 1]."""
    from medrecon.demo import sample_volume

    return sample_volume((8, 32, 32))


@pytest.fixture
def mri_measurement(phantom, host) -> medrecon.Measurement:
    return medrecon.simulate(
        phantom, {"name": "mri-multicoil", "acceleration": 4}, noise_std=0.001, seed=3, host=host
    )
