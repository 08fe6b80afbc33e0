"""Parallel-beam CT: exact adjoint, agreement with scikit-image, sparse-view and limited-angle geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import medrecon
from medrecon.numerics import adjoint_test, operator_norm
from medrecon_ct import ParallelBeamCT, parallel_angles


@pytest.fixture(scope="module")
def slice101() -> np.ndarray:
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    # 101 pixels and ceil(sqrt(2) * 101) = 143 detector bins are both odd: then scikit-image's
    # rotation centre (pixel N // 2) and ours (the geometric centre) coincide exactly.
    return resize(shepp_logan_phantom(), (101, 101)).astype(np.float32)


@pytest.mark.parametrize("shape", [(33, 33), (4, 32, 32)])
@pytest.mark.parametrize(
    "geometry", [{"views": 8}, {"views": 180}, {"angle_range": (0, 90), "angle_step": 1.5}]
)
def test_adjoint_is_exact_in_float32(shape, geometry):
    op = ParallelBeamCT(shape, **geometry)
    assert adjoint_test(op).relative_error < 1e-5


def test_forward_matches_scikit_image_radon(slice101):
    from skimage.transform import radon

    op = ParallelBeamCT(slice101.shape, views=180)
    ours = op(torch.from_numpy(slice101)).numpy()
    ref = radon(slice101, op.angles_deg, circle=False).T
    assert ours.shape == ref.shape == (180, 143)
    assert np.corrcoef(ours.ravel(), ref.ravel())[0, 1] > 0.999


@pytest.mark.parametrize("window", ["ramp", "shepp-logan", "cosine", "hamming", "hann"])
def test_fbp_matches_scikit_image_iradon_on_full_view_data(slice101, window):
    from skimage.transform import iradon, radon

    op = ParallelBeamCT(slice101.shape, views=180)
    ours = op.fbp(op(torch.from_numpy(slice101)), window=window).numpy()
    sino = radon(slice101, op.angles_deg, circle=False)
    ref = iradon(
        sino,
        op.angles_deg,
        circle=False,
        filter_name=window.replace("-", "_") if window != "shepp-logan" else window,
        output_size=101,
    )
    assert np.corrcoef(ours.ravel(), ref.ravel())[0, 1] > 0.998
    # and it is at least as close to the truth as scikit-image's
    assert np.linalg.norm(ours - slice101) <= np.linalg.norm(ref - slice101) * 1.01


def test_volumes_are_projected_slice_by_slice():
    op = ParallelBeamCT((3, 32, 32), views=12)
    x = torch.rand(3, 32, 32)
    y = op(x)
    assert y.shape == (3, 12, 46)
    single = ParallelBeamCT((32, 32), views=12)
    for d in range(3):
        torch.testing.assert_close(y[d], single(x[d]))


def test_geometries():
    np.testing.assert_allclose(parallel_angles(views=8), np.arange(8) * 22.5)
    limited = parallel_angles(angle_range=(0, 90), angle_step=1.0)
    assert limited[0] == 0 and limited[-1] == 89 and len(limited) == 90
    op = ParallelBeamCT((64, 64), views=8)
    assert op.detectors == 91 and op.range_shape == (8, 91)
    # the norm of a Radon transform grows like sqrt(views * N)
    assert 0.5 < operator_norm(op) / np.sqrt(8 * 64) < 2.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"angles": np.array([0.0, 400.0])}, r"angles must lie within \[-360, 360\] degrees"),
        ({"angle_range": (90, 0)}, "stop > start"),
        ({"views": 0}, "views must be >= 1"),
        ({"detectors": 0}, "detectors must be >= 1"),
    ],
)
def test_bad_geometries_get_clear_errors(kwargs, message):
    with pytest.raises(medrecon.InputError, match=message):
        ParallelBeamCT((32, 32), **kwargs)


def test_rectangular_slices_project_as_the_same_image_padded_square():
    """A 2 x 32 x 30 volume is seen exactly as its 32 x 32 zero-padded version (same centre), and
    the adjoint of the rectangular geometry is exact."""
    x = torch.rand(2, 32, 30, generator=torch.Generator().manual_seed(0))
    assert ParallelBeamCT((32, 30)).detectors == 44  # the diagonal, ceil(sqrt(32^2 + 30^2))
    rect = ParallelBeamCT((2, 32, 30), views=12, detectors=46)
    square = ParallelBeamCT((2, 32, 32), views=12)
    padded = torch.nn.functional.pad(x, (1, 1))
    torch.testing.assert_close(rect(x), square(padded), rtol=1e-5, atol=1e-5)
    y = torch.rand(rect.range_shape, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(rect.adjoint(y), square.adjoint(y)[..., 1:-1], rtol=1e-5, atol=1e-5)
    assert medrecon.adjoint_test(ParallelBeamCT((21, 38), views=7)).relative_error < 1e-5


def test_tiny_slices_and_complex_sinograms_are_refused():
    with pytest.raises(medrecon.InputError, match=r"at least 2 x 2, got \(32, 1\)"):
        ParallelBeamCT((32, 1))
    op = ParallelBeamCT((32, 32), views=8)
    with pytest.raises(medrecon.InputError, match="measurement must be real"):
        medrecon.Problem(op, torch.zeros(8, 46, dtype=torch.complex64), 0.1)


def test_poisson_noise_follows_the_photon_count():
    x = torch.full((32, 32), 0.02)  # about water at 1 mm pixels: line integrals up to ~0.9
    few = ParallelBeamCT((32, 32), views=30, photons=1e3)
    many = ParallelBeamCT((32, 32), views=30, photons=1e5)
    clean = few(x)
    err_few = (few.simulate(x, 0.0, seed=1) - clean).std()
    err_many = (many.simulate(x, 0.0, seed=1) - clean).std()
    assert 5 < float(err_few / err_many) < 15  # std ~ 1 / sqrt(photons): a factor 10
    torch.testing.assert_close(few.simulate(x, 0.0, seed=1), few.simulate(x, 0.0, seed=1))


def test_the_inverse_variance_of_photon_counting_data_matches_its_noise():
    x = torch.zeros(32, 32)
    x[6:26, 6:26] = 0.1  # line integrals from 0 to ~2.8: counts vary 16-fold across the sinogram
    op = ParallelBeamCT((32, 32), views=30, photons=2e3)
    clean = op(x)
    draws = torch.stack([op.simulate(x, 0.01, seed=s) for s in range(300)])
    measured = draws.var(dim=0)
    expected = 1.0 / op.inverse_variance(clean, 0.01)  # Poisson on the log plus the Gaussian part
    ratio = (measured / expected).flatten()
    assert 0.85 < float(ratio.median()) < 1.15 and float(ratio.quantile(0.9)) < 1.5
    assert float(expected.max() / expected.min()) > 8  # the weights do vary along the rays
    assert ParallelBeamCT((32, 32), views=30).inverse_variance(clean, 0.01) is None  # white noise


def test_dps_weights_photon_counting_data_in_the_prior_s_units():
    from medrecon.numerics.intensity import IntensityMap
    from medrecon_priors import Gaussian
    from medrecon_samplers import DPS

    x = torch.zeros(16, 16)
    x[4:12, 4:12] = 0.2
    op = ParallelBeamCT((16, 16), views=12, photons=1e3)
    problem = medrecon.Problem(op, op.simulate(x, 0.0, seed=0), 0.0)
    torch.testing.assert_close(problem.inverse_variance, op.inverse_variance(problem.y, 0.0))
    model = IntensityMap(scale=0.1, offset=0.0, source="test").to_model(problem)
    # residuals in model units are 10x those in y's: their inverse variance is 100x smaller
    torch.testing.assert_close(model.inverse_variance, problem.inverse_variance * 0.01)
    prior = Gaussian(kind="diagonal", mean=0.1, variance=0.01)
    poisson = DPS(steps=5, noise_model="poisson").run(problem, prior, seed=0).image
    gaussian = DPS(steps=5).run(problem, prior, seed=0).image
    assert torch.isfinite(poisson).all() and not torch.allclose(poisson, gaussian)


def test_simulate_and_reconstruct_through_the_registry(host, phantom):
    m = medrecon.simulate(phantom, {"name": "ct-parallel", "views": 60}, noise_std=0.01, seed=0, host=host)
    assert m.y.shape == (8, 60, 46) and m.arrays["angles"].shape == (60,)
    result = medrecon.reconstruct({"sampler": {"name": "cg", "iterations": 20}}, m, host=host, device="cpu")
    err = np.linalg.norm(result.image.numpy() - phantom) / np.linalg.norm(phantom)
    assert err < 0.3


@pytest.mark.parametrize(
    ("shape", "geometry"),
    [
        ((2, 33, 29), {"views": 17}),
        ((3, 40, 40), {"angle_range": (0, 90), "angle_step": 7.5}),
        ((12, 20, 31), {"views": 5}),
    ],
)
def test_the_matrix_free_projector_is_the_matrix(shape, geometry):
    # Clinical geometries (512^2, 720 views) do not fit as a matrix; the matrix-free projector must
    # be the same operator (to float32 round-off), with an exact adjoint, for volumes and batches.
    matrix = ParallelBeamCT(shape, projector="matrix", **geometry)
    free = ParallelBeamCT(shape, projector="matrix-free", **geometry)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand((2, *shape), generator=gen), torch.rand((2, *matrix.range_shape), generator=gen)
    with torch.no_grad():
        for a, b in ((matrix(x), free(x)), (matrix.adjoint(y), free.adjoint(y))):
            assert torch.allclose(a, b, atol=1e-5 * float(a.abs().max()))
    assert adjoint_test(free).relative_error < 1e-6


def test_the_projector_is_chosen_by_its_memory_estimate():
    small = ParallelBeamCT((2, 32, 32), views=16)
    assert small.projector == "matrix"  # fast, and it fits
    tight = ParallelBeamCT((2, 32, 32), views=16, memory_budget_gb=1e-4)
    assert tight.projector == "matrix-free" and not hasattr(tight, "matrix")
    clinical = ParallelBeamCT((1, 512, 512), views=720)  # its matrix would take ~25 GB to build
    assert clinical.projector == "matrix-free" and clinical.matrix_estimate > 16 * 2**30
    with pytest.raises(medrecon.InputError, match="projector must be 'auto', 'matrix' or 'matrix-free'"):
        ParallelBeamCT((2, 32, 32), projector="astra")
    with pytest.raises(medrecon.InputError, match="memory_budget_gb must be > 0"):
        ParallelBeamCT((2, 32, 32), memory_budget_gb=0)
