"""Inpainting and downsampling: exact adjoints, the masks asked for, exact solves and pseudo-inverses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import medrecon
from medrecon_restoration import Downsample, Inpainting

OPERATORS = {
    "inpaint-random-2d": lambda: Inpainting((33, 40), missing=0.7),
    "inpaint-lines-slices": lambda: Inpainting((3, 32, 28), mask_type="lines", missing=0.5),
    "inpaint-boxes-volume": lambda: Inpainting((12, 24, 24), mask_type="boxes", per_slice=False, box=5),
    "down-block-2d": lambda: Downsample((32, 28), factor=4),
    "down-block-3d": lambda: Downsample((8, 16, 12), factor=2, dims=3),
    "down-gauss-slices": lambda: Downsample((3, 32, 24), factor=4, method="gaussian"),
    "down-gauss-3d": lambda: Downsample((8, 16, 12), factor=2, method="gaussian", dims=3),
}


def rand(shape, seed=0):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", OPERATORS)
def test_adjoint_is_exact(name):
    assert medrecon.adjoint_test(OPERATORS[name]()).relative_error < 1e-5


@pytest.mark.parametrize("name", OPERATORS)
def test_exact_range_solve_and_pseudo_inverse(name):
    op = OPERATORS[name]()
    v = rand(op.range_shape, 1)
    z = op.solve_range_system(v, 0.7, 0.01)
    torch.testing.assert_close(0.7 * op(op.adjoint(z)) + 0.01 * z, v, rtol=1e-4, atol=1e-4)
    y = op(rand(op.domain_shape, 2))
    x = op.pseudo_inverse(y)
    torch.testing.assert_close(op(x), y, rtol=1e-4, atol=1e-4)  # reproduces y ...
    # ... with the least norm: nothing in the null space, so A^+ A (a projection) leaves it as it is
    torch.testing.assert_close(op.pseudo_inverse(op(x)), x, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"mask_type": "random", "missing": 0.7}, 0.3),
        ({"mask_type": "lines", "missing": 0.5}, 0.5),
        ({"mask_type": "boxes", "missing": 0.4, "box": 6}, 0.6),
    ],
)
def test_masks_miss_about_the_fraction_asked_for(kwargs, expected):
    op = Inpainting((4, 96, 96), seed=3, **kwargs)
    assert float(op.mask.mean()) == pytest.approx(expected, abs=0.06)
    assert op.describe()["per_slice"] and not torch.equal(op.mask[0], op.mask[1])
    if kwargs["mask_type"] == "lines":  # whole rows
        assert bool((op.mask == op.mask[..., :1]).all())


def test_inpainting_simulation_leaves_missing_pixels_at_zero():
    op = Inpainting((2, 32, 32), missing=0.7)
    y = op.simulate(torch.ones(2, 32, 32), noise_std=0.1, seed=0)
    assert bool((y[op.mask == 0] == 0).all()) and float(y[op.mask == 1].std()) > 0.05


def test_downsampling_matches_the_established_peers():
    from scipy.ndimage import gaussian_filter

    x = rand((2, 32, 24))
    block = Downsample((2, 32, 24), factor=4)
    torch.testing.assert_close(block(x), torch.nn.functional.avg_pool2d(x[:, None], 4)[:, 0])
    gauss = Downsample((2, 32, 24), factor=4, method="gaussian", sigma=1.5)
    expected = np.stack([gaussian_filter(s, 1.5, mode="wrap", truncate=8.0)[::4, ::4] for s in x.numpy()])
    np.testing.assert_allclose(gauss(x).numpy(), expected, atol=2e-4)


def test_bad_geometries_say_what_would_fit():
    with pytest.raises(
        medrecon.InputError, match=r"not a multiple of factor 4.*crop to \(232, 196\) or pad to \(236, 200\)"
    ):
        Downsample((233, 197), factor=4)
    with pytest.raises(medrecon.InputError, match=r"smaller than the downsampling factor 8.*factor <= 6"):
        Downsample((2, 6, 6), factor=8)
    with pytest.raises(medrecon.InputError, match="missing must be a fraction"):
        Inpainting((8, 8), missing=1.5)
    with pytest.raises(medrecon.InputError, match=r"mask shape \(8, 7\) does not match the image"):
        Inpainting((8, 8), mask=np.ones((8, 7)))


def test_the_operators_are_plugins_with_bundles_that_round_trip(host, tmp_path):
    truth = rand((2, 32, 32)).numpy()
    for op in ({"name": "inpainting", "missing": 0.6}, {"name": "downsample", "factor": 2}):
        m = medrecon.simulate(truth, op, noise_std=0.01, host=host)
        medrecon.save_bundle(tmp_path / "m.h5", m)
        back = medrecon.load_bundle(tmp_path / "m.h5")
        cg = medrecon.reconstruct({"sampler": {"name": "cg", "iterations": 5}}, back, host=host)
        assert tuple(cg.image.shape) == truth.shape and torch.isfinite(cg.image).all()


def test_a_single_slice_volume_gets_a_mask_of_its_shape(host):
    m = medrecon.simulate(np.ones((1, 16, 16), np.float32), {"name": "inpainting"}, noise_std=0.0, host=host)
    assert m.y.shape == (1, 16, 16) and 0.2 < float((m.y != 0).mean()) < 0.4  # 70% missing by default
