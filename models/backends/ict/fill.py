"""Colour for the parts of the head a photo does not show: push-pull in 3D around the neutral head.

The bake (models/backends/ict/bake.py) knows a colour for every vertex the photo shows well (visible, facing
the camera, inside the trusted region around the face). Everything else -- the back of the head,
the neck, the far side of a turned face, the ears' backs, the mouth interior -- takes its colour
from this fill, which is a smooth function of the vertex's position on the NEUTRAL head:

* the known colours are splatted (weighted sums) into a voxel grid around the head (1 cm voxels);
* push: the grid is pooled level by level, first across x and z only (around the head at the same
  height), then along y; pull: each level keeps its own mean where it has data and takes the
  trilinear upsampling of the coarser level elsewhere (Gortler et al.'s push-pull, weights clamped
  at 1), so the result is continuous and has no hard edges;
* each vertex reads the finest level trilinearly.

Pooling x and z before y is the one design choice: the back of the head at the height of the
temples and crown takes the colour seen at the sides and top of the head at that height (hair where
the photo shows hair, skin where it shows a bald scalp), the back of the neck takes the neck's skin,
and only heights the photo shows nowhere borrow from the heights above and below. Being a function
of 3D position, the fill is the same on both sides of every UV seam.

Vertices are split into groups that never share colour (skin; mouth socket, gums and tongue; teeth;
eyeballs): lips should not bleed onto teeth, nor eyelid skin onto the eyes. A group with no known
vertex at all (a closed mouth shows no teeth) takes its prior colour.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

VOXEL_CM = 1.0
BLUR_Y_CM = 2.5  # vertical softening of the around-the-head levels (see _blur_y)
BLUR_BELOW_CELLS = 16  # levels with at most this many x-z cells count as around the head
# part -> group; groups' prior RGB when the photo shows none of them.
GROUPS = {
    "face": 0, "head_neck": 0, "eye_socket_left": 0, "eye_socket_right": 0,
    "mouth_socket": 1, "gums_tongue": 1, "teeth": 2, "eyeball_left": 3, "eyeball_right": 3,
}  # fmt: skip
PRIORS = ((176, 132, 112), (96, 38, 40), (222, 214, 196), (214, 206, 200))


@functools.lru_cache(maxsize=64)
def _blur_matrix(size: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """(size, size) Gaussian blur (sigma BLUR_Y_CM) with replicated edges, as a matrix: the taps that
    fall past an edge add to the edge's own column."""
    sigma = BLUR_Y_CM / VOXEL_CM
    radius = math.ceil(3 * sigma)
    taps = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (taps / sigma) ** 2)
    kernel /= kernel.sum()
    matrix = np.zeros((size, size))
    rows = np.arange(size)[:, None]
    np.add.at(matrix, (np.broadcast_to(rows, (size, len(taps))), np.clip(rows + taps, 0, size - 1)), kernel)
    return torch.tensor(matrix, dtype=dtype, device=device)


def _blur_y(t: Tensor) -> Tensor:
    """Gaussian blur along y (dim 3) of (N, C, Z, Y, X), sigma BLUR_Y_CM, edges replicated: one batched
    matmul (Y is at most a few dozen cells), not a permute, pad and conv1d."""
    return torch.matmul(_blur_matrix(t.shape[3], t.dtype, t.device), t)


def _pool(t: Tensor, kernel: tuple[int, int, int]) -> Tensor:
    """Sum-pool (N, C, Z, Y, X) by ``kernel``, zero-padding up to a multiple of it."""
    pad = [0, 0, 0, 0, 0, 0]
    for axis, k in enumerate(kernel):  # pad order is (X, Y, Z) from the last dim
        size = t.shape[2 + axis]
        pad[2 * (2 - axis) + 1] = (-size) % k
    t = F.pad(t, pad)
    return F.avg_pool3d(t, kernel, stride=kernel, divisor_override=1)


class PushPullFill:
    """The fill for one head layout on one device; ``__call__`` runs a batch of faces."""

    def __init__(self, neutral: np.ndarray, vertex_part: np.ndarray, part_names: tuple[str, ...], device):
        lo = neutral.min(axis=0) - VOXEL_CM
        dims = np.ceil((neutral.max(axis=0) + VOXEL_CM - lo) / VOXEL_CM).astype(np.int64)  # x, y, z
        self.dims = tuple(int(d) for d in dims[::-1])  # Z, Y, X
        ijk = np.floor((neutral - lo) / VOXEL_CM).astype(np.int64)
        voxel = (ijk[:, 2] * dims[1] + ijk[:, 1]) * dims[0] + ijk[:, 0]
        group = np.array([GROUPS[part_names[p]] for p in vertex_part], np.int64)
        self.n_groups = len(PRIORS)
        self.n_voxels = int(np.prod(dims))
        self.device = torch.device(device)
        self.slot = torch.from_numpy(group * self.n_voxels + voxel).to(self.device)
        # Trilinear read-back: each vertex's 8 voxel centres (clamped at the grid's edge) and weights,
        # in its own group's grid; fixed, because the fill lives on the neutral head.
        pos = (neutral - lo) / VOXEL_CM - 0.5  # voxel-centre units
        base = np.floor(pos).astype(np.int64)
        frac = (pos - base).astype(np.float32)
        ids, weights = [], []
        for corner in range(8):
            step = np.array([(corner >> a) & 1 for a in range(3)])  # x, y, z
            ijk = np.clip(base + step, 0, dims - 1)
            ids.append(group * self.n_voxels + (ijk[:, 2] * dims[1] + ijk[:, 1]) * dims[0] + ijk[:, 0])
            weights.append(np.prod(np.where(step == 1, frac, 1 - frac), axis=1))
        self.read_ids = torch.from_numpy(np.stack(ids, axis=1)).to(self.device)
        self.read_weights = torch.from_numpy(np.stack(weights, axis=1).astype(np.float32)).to(self.device)
        self.priors = torch.tensor(PRIORS, dtype=torch.float32, device=self.device)
        levels, z, y, x = [], *self.dims
        while x > 1 or z > 1:
            levels.append((2 if z > 1 else 1, 1, 2 if x > 1 else 1))
            z, x = math.ceil(z / 2), math.ceil(x / 2)
        while y > 1:
            levels.append((1, 2, 1))
            y = math.ceil(y / 2)
        self.levels = levels
        self._sparse = bool(levels) and self.dims[0] * self.dims[2] > BLUR_BELOW_CELLS
        if self._sparse:
            self._finest_at_reads(np.stack(ids, axis=1))

    def _finest_at_reads(self, read_ids: np.ndarray) -> None:
        """The finest level is only ever read at the voxels around the vertices (a few % of the grid):
        the pull computes it there alone. Per such voxel: its ids (``finest``), and the taps and weights
        of the trilinear upsampling of the next level at it (the weights torch's own ``interpolate``
        gives, per axis, multiplied); the vertices then read those voxels (``local_ids``)."""
        kernel, dims = self.levels[0], self.dims
        coarse = [math.ceil(s / k) for s, k in zip(dims, kernel, strict=True)]
        axes = []  # per axis (Z, Y, X): (fine, coarse) interpolation weights
        for n, k, fine in zip(coarse, kernel, dims, strict=True):
            eye = torch.eye(n, dtype=torch.float64)[:, None]
            axes.append(
                F.interpolate(eye, size=n * k, mode="linear", align_corners=False)[:, 0, :fine].T.numpy()
            )
        finest = np.unique(read_ids)
        group, voxel = np.divmod(finest, self.n_voxels)
        zyx = np.unravel_index(voxel, dims)
        taps, weights = [np.zeros(len(finest), np.int64)], [np.ones(len(finest))]
        for axis, stride in zip(range(3), (coarse[1] * coarse[2], coarse[2], 1), strict=True):
            rows = axes[axis][zyx[axis]]  # (R, n): at most two nonzero
            first = np.argmax(rows > 0, axis=1)
            second = np.minimum(first + 1, rows.shape[1] - 1)
            w0, w1 = rows[np.arange(len(rows)), first], rows[np.arange(len(rows)), second]
            w1 = np.where(second == first, 0.0, w1)
            taps = [t + c * stride for t in taps for c in (first, second)]
            weights = [w * c for w in weights for c in (w0, w1)]
        base = group * int(np.prod(coarse))
        self.finest = torch.from_numpy(finest).to(self.device)
        self.tap_ids = torch.from_numpy(np.stack(taps, axis=1) + base[:, None]).to(self.device)
        self.tap_weights = torch.from_numpy(np.stack(weights, axis=1).astype(np.float32)).to(self.device)
        self.local_ids = torch.from_numpy(np.searchsorted(finest, read_ids)).to(self.device)

    def __call__(self, colours: Tensor, weights: Tensor) -> Tensor:
        """colours (F, V, 3) float 0..255 and weights (F, V) 0..1 of the known vertices -> (F, V, 3)
        filled colours for every vertex (read where the weights are low; smooth everywhere)."""
        faces = colours.shape[0]
        values = torch.cat([colours * weights[..., None], weights[..., None]], dim=-1)  # (F, V, 4)
        # index_add_ along dim 0 (rows of F x 4 values): the fast path; along dim 1 it is ~10x slower.
        rows = values.new_zeros((self.n_groups * self.n_voxels, faces * 4))
        rows.index_add_(0, self.slot, values.transpose(0, 1).reshape(-1, faces * 4))
        grid = rows.view(self.n_groups, *self.dims, faces, 4).permute(4, 0, 5, 1, 2, 3)  # (F, G, 4, Z, Y, X)
        grid = grid.reshape(faces * self.n_groups, 4, *self.dims)
        pyramid = [grid]
        for kernel in self.levels:
            pyramid.append(_pool(pyramid[-1], kernel))
        top = pyramid[-1]
        prior = self.priors.repeat(faces, 1)[:, :, None, None, None]  # (FG, 3, 1, 1, 1)
        known = top[:, 3:] > 0
        value = torch.where(known, top[:, :3] / top[:, 3:].clamp_min(1e-6), prior)
        if top.shape[3] > 1:
            value = _blur_y(value)
        finest = 1 if self._sparse else 0  # the sparse path does the finest level at the reads only
        for level, kernel in zip(reversed(pyramid[finest:-1]), reversed(self.levels[finest:]), strict=True):
            size = tuple(math.ceil(s / k) * k for s, k in zip(level.shape[2:], kernel, strict=True))
            up = F.interpolate(value, size=size, mode="trilinear", align_corners=False)
            up = up[:, :, : level.shape[2], : level.shape[3], : level.shape[4]]
            alpha = level[:, 3:].clamp(max=1.0)
            value = up.lerp_(level[:, :3] / level[:, 3:].clamp_min(1e-6), alpha)  # alpha·own + (1-alpha)·up
            if level.shape[2] * level.shape[4] <= BLUR_BELOW_CELLS:  # around-the-head levels: soften
                value = _blur_y(value)  # 1 cm height bands (brows, eyes) into a smooth hair-to-skin run
        table = value.reshape(faces, self.n_groups, 3, -1).permute(1, 3, 0, 2).reshape(-1, faces * 3)
        if not self._sparse:
            own = F.embedding_bag(self.read_ids, table, per_sample_weights=self.read_weights, mode="sum")
            return own.view(-1, faces, 3).transpose(0, 1)
        # The finest level at the read voxels: alpha·own + (1 - alpha)·upsampled, as in the loop above.
        up = F.embedding_bag(self.tap_ids, table, per_sample_weights=self.tap_weights, mode="sum")
        level = rows.index_select(0, self.finest).view(-1, faces, 4)
        own = level[..., :3] / level[..., 3:].clamp_min(1e-6)
        value = up.view(-1, faces, 3).lerp_(own, level[..., 3:].clamp(max=1.0)).view(-1, faces * 3)
        out = F.embedding_bag(self.local_ids, value, per_sample_weights=self.read_weights, mode="sum")
        return out.view(-1, faces, 3).transpose(0, 1)
