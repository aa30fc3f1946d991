"""UV texture baking: sample the photo at every texel's projected position, batched on the device.

Design (why it is fast): everything that depends only on the UV layout is precomputed once per
texture size as an index map. Each texel of the square texture refers to three "corner" slots and
their barycentric weights; per call, a (3T + 1)-row table of projected corner positions is built
for every face (T = 852 triangles, a few kB), one ``embedding_bag`` turns it into the sampling
grid of all texels, and one ``grid_sample`` reads the colours. Choices made per triangle (not per
texel) fold the rest into that same single pass:

* visibility: a triangle is visible when it faces the camera and passes a coarse z-buffer test;
* mirror fill: an invisible triangle takes the corners of its left/right mirror image (the UV
  layout is exactly symmetric, so the same barycentrics land on the mirrored texel);
* mean skin colour: triangles with neither side visible, and texels beyond the seam padding,
  point at a strip of the mean visible colour appended to the photo;
* seam padding: texels up to ``PADDING_TEXELS`` outside the atlas (eye/mouth holes and the
  outer rim) copy the corner slots of their nearest atlas texel, so mipmaps show no seams.

The photo is sampled at ``sample_size`` (default 512 on CPU, see :func:`default_sample_size`)
and the uint8 result is bilinearly upscaled to ``uv_size``; padding widens by the same factor.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import distance_transform_edt

from face3d.models.backends.facemesh.topology import Topology, rasterize_uv

MIN_UV_SIZE, MAX_UV_SIZE = 256, 4096
ZBUFFER_CELLS = 48  # coarse z-buffer resolution across the face's bounding box
DEPTH_TOLERANCE_CELLS = 2.0  # a surface may rise this many cell widths within one cell
MIN_FACING_COS = 0.25  # triangles seen at more than ~75 degrees from their normal are "hidden"
# Barycentric sample points per triangle for the z-buffer (a level-3 grid, vertices included).
_ZSAMPLES = torch.tensor([(i, j, 3 - i - j) for i in range(4) for j in range(4 - i)], dtype=torch.float32) / 3
_STRIP = 2  # width in px of the mean-colour strip appended to each photo
CPU_SAMPLE_SIZE = 512
PADDING_TEXELS = 4  # seam padding at the sampling resolution; upscaling only widens it in px


def default_sample_size(uv_size: int, device: torch.device) -> int:
    """Resolution at which the photo is sampled before upscaling to ``uv_size``.

    Sampling costs ~30 ns per texel on a slow CPU core, so a 2048 bake sampled texel by texel
    (4.2 M samples) blows the CPU request budget; a 512 atlas already holds ~500 texels across the
    face, about what a typical photo's face offers, and a uint8 bilinear upscale is cheap. GPUs
    sample at full resolution up to 2048 (the index maps for 4096 would cost ~400 MB).
    """
    return min(uv_size, 2048 if device.type == "cuda" else CPU_SAMPLE_SIZE)


class TextureBaker:
    """Bakes (F, S, S, 3) uint8 textures for the fixed UV layout at one size ``S``."""

    def __init__(
        self,
        topology: Topology,
        uv_size: int,
        device: torch.device | str = "cpu",
        sample_size: int | None = None,
    ) -> None:
        if not MIN_UV_SIZE <= uv_size <= MAX_UV_SIZE:
            raise ValueError(f"uv_size must be in [{MIN_UV_SIZE}, {MAX_UV_SIZE}], got {uv_size}")
        self.uv_size = uv_size
        self.device = torch.device(device)
        self.sample_size = sample_size or default_sample_size(uv_size, self.device)
        if not 0 < self.sample_size <= uv_size:
            raise ValueError(f"sample_size must be in (0, uv_size], got {self.sample_size}")
        tris = topology.triangles.astype(np.int64)
        n_tri = len(tris)
        owner, bary, _ = rasterize_uv(topology.uvs, tris, self.sample_size)
        inside = owner >= 0
        # Nearest atlas texel of every texel; those within the padding band take its slots.
        dist, (near_r, near_c) = distance_transform_edt(~inside, return_indices=True)
        src_owner = owner[near_r, near_c]
        src_bary = bary[near_r, near_c]
        background = dist > PADDING_TEXELS
        slots = src_owner[..., None] * 3 + np.arange(3)
        slots[background] = 3 * n_tri  # the mean-colour anchor slot
        src_bary[background] = (1.0, 0.0, 0.0)
        self._slots = torch.from_numpy(slots.reshape(-1, 3).astype(np.int32)).to(self.device)
        self._weights = torch.from_numpy(src_bary.reshape(-1, 3)).to(self.device)
        texels = np.bincount(owner[inside], minlength=n_tri).astype(np.float32)
        self._tri_texels = torch.from_numpy(texels).to(self.device)
        self._triangles = torch.from_numpy(tris).to(self.device)
        mirror = torch.from_numpy(topology.mirror.astype(np.int64)).to(self.device)
        # Mirrored corners in the same order (same barycentrics -> the mirrored texel); this
        # triangle is clockwise seen from outside, so visibility uses it with corners 1, 2 swapped.
        self._mirror_triangles = mirror[self._triangles]
        self._zsamples = _ZSAMPLES.to(self.device)

    def bake(
        self, images: torch.Tensor, face_image: torch.Tensor, verts_img: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Textures and coverage for F faces.

        images: (B, 3, H, W) uint8 padded batch on the device; face_image: (F,) long index of each
        face's image in the batch; verts_img: (F, 468, 3) image-space vertices (px, z smaller =
        closer). Returns textures (F, S, S, 3) uint8 (row 0 = top = v 1) and coverage (F,) float,
        the fraction of atlas texels whose own triangle is visible.
        """
        n_faces = verts_img.shape[0]
        if n_faces == 0:
            empty = torch.empty((0, self.uv_size, self.uv_size, 3), dtype=torch.uint8, device=self.device)
            return empty, torch.empty(0, device=self.device)
        verts = verts_img.to(torch.float32)
        own = verts[:, self._triangles]  # (F, T, 3 corners, 3)
        mirrored = verts[:, self._mirror_triangles]
        visible = self._visible(verts, torch.cat([own, mirrored[:, :, [0, 2, 1]]], dim=1))
        vis_own, vis_mirror = visible.chunk(2, dim=1)
        coverage = (vis_own.float() @ self._tri_texels) / self._tri_texels.sum()

        source, origin = self._face_windows(images, face_image, verts)
        height, width = source.shape[-2], source.shape[-1] - _STRIP
        # Pixel -> grid_sample coordinates. Pixel k's centre sits at k (MediaPipe's convention, used
        # by the landmarks); with align_corners=False, -1 and 1 are the outer pixel edges.
        to_grid = verts.new_tensor([2.0 / (width + _STRIP), 2.0 / height])
        shift = 0.5 - origin[:, None, None, :]
        own_xy = (own[..., :2] + shift) * to_grid - 1
        mirror_xy = (mirrored[..., :2] + shift) * to_grid - 1
        source[..., width:] = self._mean_colour(source, own_xy, vis_own)[:, :, None, None]
        strip_centre = 2.0 * (width + _STRIP / 2) / (width + _STRIP) - 1  # Python math: no device sync
        anchor = verts.new_tensor([strip_centre, 0.0]).expand(n_faces, 1, 2)
        pick_mirror = (~vis_own & vis_mirror)[..., None, None]
        use_mean = (~vis_own & ~vis_mirror)[..., None, None]
        corners = torch.where(pick_mirror, mirror_xy, own_xy)
        corners = torch.where(use_mean, anchor[:, None], corners).reshape(n_faces, -1, 2)
        table = torch.cat([corners, anchor], dim=1).permute(1, 0, 2).reshape(-1, n_faces * 2)
        grid = F.embedding_bag(self._slots, table, per_sample_weights=self._weights, mode="sum")
        size = self.sample_size
        grid = grid.view(size, size, n_faces, 2).permute(2, 0, 1, 3)
        colours = F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=False)
        out = (self.uv_size, self.uv_size)
        if size != self.uv_size and self.device.type != "cpu":  # only the CPU has a uint8 kernel
            colours = F.interpolate(colours, size=out, mode="bilinear", align_corners=False)
        textures = colours.add_(0.5).to(dtype=torch.uint8, memory_format=torch.channels_last)
        if textures.shape[-1] != self.uv_size:
            textures = F.interpolate(textures, size=out, mode="bilinear", align_corners=False)
        return textures.permute(0, 2, 3, 1), coverage

    @staticmethod
    def _face_windows(
        images: torch.Tensor, face_image: torch.Tensor, verts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Float copies (F, 3, h, w + strip) of only the photo windows the faces cover, and their origins.

        Every texel samples a convex combination of mesh vertices, so it lies inside the vertices'
        bounding box: converting just that window to float (not the whole photo) saves most of the
        bake's memory traffic on large photos. Windows share one size (the largest face's box, within
        the photo) and are shifted to stay inside the photo, so grid_sample's border clamping still
        replicates the photo's own edge. The strip columns on the right hold the mean colour.
        """
        height, width = images.shape[-2:]
        xy = verts[..., :2]
        boxes = torch.cat([xy.amin(dim=1) - 1, xy.amax(dim=1) + 2], dim=1).cpu().tolist()  # one sync
        win_w = min(width, max(1, *(math.ceil(b[2] - max(b[0], 0)) for b in boxes)))
        win_h = min(height, max(1, *(math.ceil(b[3] - max(b[1], 0)) for b in boxes)))
        source = torch.zeros((len(boxes), 3, win_h, win_w + _STRIP), device=images.device)
        origins = []
        for k, (image, box) in enumerate(zip(face_image.tolist(), boxes, strict=True)):
            x0 = int(min(max(box[0], 0), width - win_w))
            y0 = int(min(max(box[1], 0), height - win_h))
            source[k, :, :, :win_w] = images[image, :, y0 : y0 + win_h, x0 : x0 + win_w]  # uint8 -> float
            origins.append((x0, y0))
        return source, verts.new_tensor(origins)

    def _visible(self, verts: torch.Tensor, corners: torch.Tensor) -> torch.Tensor:
        """(F, K) bool: the triangle faces the camera and no nearer surface covers its centre.

        corners: (F, K, 3, 3) image-space corners, counter-clockwise seen from outside.
        The z-buffer scatters a few barycentric samples of every front-facing triangle into a
        coarse grid over the face's bounding box (min depth per cell); a triangle is occluded
        when its centroid lies deeper than that minimum by more than a slope tolerance.
        """
        n_faces = corners.shape[0]
        normal = torch.linalg.cross(corners[:, :, 1] - corners[:, :, 0], corners[:, :, 2] - corners[:, :, 0])
        # Image y points down and z away, so a counter-clockwise triangle facing the camera has a
        # normal with negative z; nearly edge-on ones only smear a sliver of pixels, so they count
        # as hidden (their mirror image, if it faces the camera better, is sampled instead).
        facing = -normal[..., 2] > MIN_FACING_COS * normal.norm(dim=-1)
        lo = verts[:, :, :2].amin(dim=1)
        cell = (verts[:, :, :2].amax(dim=1) - lo).amax(dim=1).clamp_min(1e-6) / ZBUFFER_CELLS
        samples = torch.einsum("sk,ftkc->ftsc", self._zsamples, corners)  # (F, T, S, 3)

        def cell_index(xy: torch.Tensor) -> torch.Tensor:
            ij = ((xy - lo[:, None, None, :]) / cell[:, None, None, None]).long()
            ij = ij.clamp(0, ZBUFFER_CELLS - 1)
            return ij[..., 1] * ZBUFFER_CELLS + ij[..., 0]

        depth = samples[..., 2].masked_fill(~facing[..., None], float("inf"))
        zbuf = torch.full((n_faces, ZBUFFER_CELLS**2), float("inf"), device=verts.device)
        zbuf.scatter_reduce_(
            1, cell_index(samples[..., :2]).reshape(n_faces, -1), depth.reshape(n_faces, -1), "amin"
        )
        centre = corners.mean(dim=2)  # (F, T, 3)
        nearest = zbuf.gather(1, cell_index(centre[:, :, None, :2]).reshape(n_faces, -1))
        return facing & (centre[..., 2] <= nearest + DEPTH_TOLERANCE_CELLS * cell[:, None])

    def _mean_colour(
        self, source: torch.Tensor, corners_xy: torch.Tensor, visible: torch.Tensor
    ) -> torch.Tensor:
        """(F, 3) mean photo colour at visible triangles' centres, weighted by their texel area.

        corners_xy: (F, T, 3, 2) corners in grid_sample coordinates of ``source``.
        """
        centre = corners_xy.mean(dim=2)[:, None]  # (F, 1, T, 2)
        samples = F.grid_sample(source, centre, mode="bilinear", padding_mode="border", align_corners=False)
        weights = visible.float() * self._tri_texels
        total = (samples[:, :, 0] * weights[:, None]).sum(dim=2)
        return total / weights.sum(dim=1, keepdim=True).clamp_min(1.0)
