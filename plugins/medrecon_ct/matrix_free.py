"""Joseph's parallel-beam projector without a matrix, for geometries whose sparse matrix does not fit.

At clinical sizes the matrix is too big: 512 x 512 slices with 720 views give about 5e8 non-zeros,
4 GB for the matrix, as much for its transpose and some 20 GB while building them. Joseph's method
samples each ray once per image row (or column), linearly interpolated along that row: exactly a
bilinear sample at a point on the row, so torch's `grid_sample` computes the projection, for a
chunk of angles at a time, and its input gradient (the same weights, scattered) the exact adjoint.
The sample grids are kept while they fit `cache_bytes`, else rebuilt per chunk at each application;
memory stays bounded by the chunk size either way. Values agree with `joseph_matrix` to float32
round-off (the samples' coordinates are float32).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

#: bytes of one chunk's sample grid (float32 x and y per sample)
CHUNK_BYTES = 64 * 2**20
#: grids are kept between applications up to this many bytes in all
CACHE_BYTES = 512 * 2**20
#: images per application block (the sampled values scale with it)
BLOCK = 8


class JosephProjector:
    """Forward projection and its exact adjoint for images (B, H, W) <-> sinograms (B, A, K), with
    `joseph_matrix`'s geometry (rotation about the image centre, unit pixels and detector bins)."""

    def __init__(
        self,
        shape: tuple[int, int],
        angles_rad: np.ndarray,
        detectors: int,
        chunk_bytes: int = CHUNK_BYTES,
        cache_bytes: int = CACHE_BYTES,
    ):
        self.height, self.width = int(shape[0]), int(shape[1])
        self.detectors = int(detectors)
        angles = np.asarray(angles_rad, dtype=np.float64)
        self.cos, self.sin = np.cos(angles), np.sin(angles)
        steep = np.abs(self.cos) >= np.abs(self.sin)  # closer to vertical: one sample per image row
        self.groups = []
        total = 0
        for is_steep in (True, False):
            index = np.flatnonzero(steep == is_steep)
            samples = self.height if is_steep else self.width
            per_angle = self.detectors * samples * 8
            size = max(1, chunk_bytes // per_angle)
            for start in range(0, index.size, size):
                self.groups.append((is_steep, index[start : start + size]))
            total += index.size * per_angle
        self.keep = total <= cache_bytes
        self._grids: dict = {}

    def _grid(self, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Chunk n's sample points (1, A * K, L, 2) in grid_sample's [-1, 1] coordinates, and the
        path length per sample of each of its angles, 1 / |cos| (or 1 / |sin|)."""
        key = (n, str(device))
        if key in self._grids:
            return self._grids[key]
        steep, index = self.groups[n]
        f32 = torch.float32
        s = torch.arange(self.detectors, dtype=f32, device=device) - (self.detectors - 1) / 2
        cos = torch.as_tensor(self.cos[index], dtype=f32, device=device)[:, None, None]
        sin = torch.as_tensor(self.sin[index], dtype=f32, device=device)[:, None, None]
        samples = self.height if steep else self.width
        line = torch.arange(samples, dtype=f32, device=device)
        grid = torch.empty(len(index), self.detectors, samples, 2, dtype=f32, device=device)
        if steep:  # row r at y = cy - r: the ray meets it at a fractional column
            across = (self.height - 1) / 2 - line
            column = (self.width - 1) / 2 + (s[None, :, None] - across[None, None, :] * sin) / cos
            grid[..., 0] = column * (2 / max(self.width - 1, 1)) - 1
            grid[..., 1] = line * (2 / max(self.height - 1, 1)) - 1
            length = 1 / cos.abs().reshape(-1)
        else:  # column c at x = c - cx: the ray meets it at a fractional row
            across = line - (self.width - 1) / 2
            row = (self.height - 1) / 2 - (s[None, :, None] - across[None, None, :] * cos) / sin
            grid[..., 0] = line * (2 / max(self.width - 1, 1)) - 1
            grid[..., 1] = row * (2 / max(self.height - 1, 1)) - 1
            length = 1 / sin.abs().reshape(-1)
        out = grid.reshape(1, -1, samples, 2), length
        if self.keep:
            self._grids[key] = out
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W) -> (B, A, K), in blocks of BLOCK images (the images are grid_sample's channels)."""
        if x.shape[0] > BLOCK:
            return torch.cat([self.forward(part) for part in x.split(BLOCK)])
        batch = x.shape[0]
        out = torch.empty(batch, len(self.cos), self.detectors, dtype=x.dtype, device=x.device)
        for n, (_, index) in enumerate(self.groups):
            grid, length = self._grid(n, x.device)
            values = F.grid_sample(x[None], grid, mode="bilinear", padding_mode="zeros", align_corners=True)
            sums = values[0].reshape(batch, len(index), self.detectors, -1).sum(dim=-1)
            out[:, torch.as_tensor(index, device=x.device)] = sums * length[None, :, None]
        return out

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """(B, A, K) -> (B, H, W): each ray's value times each sample's weights, added to the pixels
        it was interpolated from (grid_sample's input gradient: the transpose of the projection)."""
        if y.shape[0] > BLOCK:
            return torch.cat([self.adjoint(part) for part in y.split(BLOCK)])
        batch = y.shape[0]
        image = torch.zeros(1, batch, self.height, self.width, dtype=y.dtype, device=y.device)
        for n, (_, index) in enumerate(self.groups):
            grid, length = self._grid(n, y.device)
            rays = y[:, torch.as_tensor(index, device=y.device)] * length[None, :, None]  # (B, A, K)
            samples = grid.shape[2]
            spread = rays[..., None].expand(batch, len(index), self.detectors, samples)
            grad_out = spread.reshape(1, batch, -1, samples).contiguous()
            grad_in, _ = torch.ops.aten.grid_sampler_2d_backward(
                grad_out, image, grid, 0, 0, True, [True, False]
            )
            image += grad_in
        return image[0]


def matrix_bytes(shape: tuple[int, int], views: int, detectors: int) -> int:
    """An upper estimate of the peak memory of building the sparse matrix and its transpose: two
    taps per ray and sample, about 48 bytes per non-zero while scipy builds them (measured: 21.9 GB
    at 512 x 512 with 720 views)."""
    return int(views * detectors * max(shape) * 2 * 48)
