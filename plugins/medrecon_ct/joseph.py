"""Joseph's method for 2D parallel-beam projection, as a sparse matrix (so its adjoint is exact).

Each ray crosses the image along its more perpendicular axis; at every row (or column) it meets,
the image is linearly interpolated between the two nearest pixels and weighted by the path length
through that row, 1 / |cos| (or 1 / |sin|). The back-projection is the transpose of the same matrix.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch


def joseph_matrix(size: int, angles: np.ndarray, detectors: int) -> torch.Tensor:
    """Sparse CSR matrix (len(angles) * detectors, size * size), float32.

    Geometry: pixel (row r, column c) has its centre at x = c - (size - 1) / 2, y = (size - 1) / 2 - r;
    detector bin k sits at s = k - (detectors - 1) / 2; the ray for angle theta and bin s is
    {x cos(theta) + y sin(theta) = s}, so theta = 0 sums each column, as scikit-image's radon does.
    """
    angles = np.asarray(angles, dtype=np.float64)
    centre = (size - 1) / 2
    s = np.arange(detectors, dtype=np.float64) - (detectors - 1) / 2
    rows_out, cols_out, vals_out = [], [], []
    cos, sin = np.cos(angles), np.sin(angles)
    steep = np.abs(cos) >= np.abs(sin)  # the ray runs closer to vertical: step through rows
    index = np.arange(size)
    grid = index.astype(np.float64)
    for a in range(len(angles)):
        ray = (a * detectors + np.arange(detectors))[:, None]
        if steep[a]:  # one sample per image row r at y = centre - r; x runs along the ray
            across, along, step = centre - grid, sin[a], cos[a]
        else:  # one sample per image column c at x = c - centre; y runs along the ray
            across, along, step = grid - centre, cos[a], sin[a]
        moving = (s[:, None] - across[None, :] * along) / step  # x (steep) or y on the ray
        pos = centre + moving if steep[a] else centre - moving  # fractional column or row index
        lo = np.floor(pos).astype(np.int64)
        frac = pos - lo
        fixed = np.broadcast_to(index[None, :], lo.shape)
        for other, w in ((lo, 1 - frac), (lo + 1, frac)):
            ok = (other >= 0) & (other < size) & (w > 0)
            flat = fixed * size + other if steep[a] else other * size + fixed
            rows_out.append(np.broadcast_to(ray, lo.shape)[ok])
            cols_out.append(flat[ok])
            vals_out.append(w[ok] / abs(step))  # path length through one row or column
    rows = np.concatenate(rows_out)
    cols = np.concatenate(cols_out)
    vals = np.concatenate(vals_out).astype(np.float32)
    shape = (len(angles) * detectors, size * size)
    return _csr(rows, cols, vals, shape)


def _csr(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, shape: tuple[int, int]) -> torch.Tensor:
    import scipy.sparse

    m = scipy.sparse.csr_matrix((vals, (rows, cols)), shape=shape, dtype=np.float32)
    m.sum_duplicates()
    return _torch_csr(m)


def _torch_csr(m) -> torch.Tensor:
    index = torch.int32 if m.nnz < 2**31 else torch.int64
    with warnings.catch_warnings():  # torch's notice that sparse CSR is "beta": matmul is all we use
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.from_numpy(m.indptr).to(index),
            torch.from_numpy(m.indices).to(index),
            torch.from_numpy(m.data),
            size=m.shape,
            check_invariants=False,  # built by scipy, which keeps the invariants
        )


def transpose_csr(a: torch.Tensor) -> torch.Tensor:
    """The transpose of a CSR matrix, again in CSR form (for a fast exact back-projection)."""
    import scipy.sparse

    m = scipy.sparse.csr_matrix(
        (a.values().numpy(), a.col_indices().numpy(), a.crow_indices().numpy()), shape=tuple(a.shape)
    )
    return _torch_csr(m.T.tocsr())
