"""Joseph's method for 2D parallel-beam projection, as a sparse matrix (so its adjoint is exact).

Each ray crosses the image along its more perpendicular axis; at every row (or column) it meets,
the image is linearly interpolated between the two nearest pixels and weighted by the path length
through that row, 1 / |cos| (or 1 / |sin|). The back-projection is the transpose of the same matrix.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch


def joseph_matrix(shape: int | tuple[int, int], angles: np.ndarray, detectors: int) -> torch.Tensor:
    """Sparse CSR matrix (len(angles) * detectors, H * W), float32, for images of `shape` (H, W)
    (or N for N x N).

    Geometry: pixel (row r, column c) has its centre at x = c - (W - 1) / 2, y = (H - 1) / 2 - r;
    detector bin k sits at s = k - (detectors - 1) / 2; the ray for angle theta and bin s is
    {x cos(theta) + y sin(theta) = s}, so theta = 0 sums each column, as scikit-image's radon does.
    """
    height, width = (shape, shape) if isinstance(shape, int) else (int(shape[0]), int(shape[1]))
    angles = np.asarray(angles, dtype=np.float64)
    centre_y, centre_x = (height - 1) / 2, (width - 1) / 2
    s = np.arange(detectors, dtype=np.float64) - (detectors - 1) / 2
    rows_out, cols_out, vals_out = [], [], []
    cos, sin = np.cos(angles), np.sin(angles)
    steep = np.abs(cos) >= np.abs(sin)  # the ray runs closer to vertical: step through rows
    row_index, col_index = np.arange(height), np.arange(width)
    for a in range(len(angles)):
        ray = (a * detectors + np.arange(detectors))[:, None]
        if steep[a]:  # one sample per image row r at y = centre_y - r; x runs along the ray
            index, across, along, step = row_index, centre_y - row_index, sin[a], cos[a]
            pos = centre_x + (s[:, None] - across[None, :] * along) / step  # fractional column
            extent = width
        else:  # one sample per image column c at x = c - centre_x; y runs along the ray
            index, across, along, step = col_index, col_index - centre_x, cos[a], sin[a]
            pos = centre_y - (s[:, None] - across[None, :] * along) / step  # fractional row
            extent = height
        lo = np.floor(pos).astype(np.int64)
        frac = pos - lo
        fixed = np.broadcast_to(index[None, :], lo.shape)
        for other, w in ((lo, 1 - frac), (lo + 1, frac)):
            ok = (other >= 0) & (other < extent) & (w > 0)
            flat = fixed * width + other if steep[a] else other * width + fixed
            rows_out.append(np.broadcast_to(ray, lo.shape)[ok])
            cols_out.append(flat[ok])
            vals_out.append(w[ok] / abs(step))  # path length through one row or column
    rows = np.concatenate(rows_out)
    cols = np.concatenate(cols_out)
    vals = np.concatenate(vals_out).astype(np.float32)
    return _csr(rows, cols, vals, (len(angles) * detectors, height * width))


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
