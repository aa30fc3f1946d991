"""Bake a photo onto the ICT head's texture atlas (topology.py here), batched over faces in torch.

Per texture size, once: the atlas is rasterised (models/geometry/uv_raster.py) into the list of texels that
lie on the head (each with its triangle's three vertex ids and barycentric weights, and the same
for its left/right mirror point), and every other texel is pointed at its nearest head texel, so
the atlas has no background for bilinear or mip filtering to bleed in.

Per call, for F faces with their fitted vertices projected into the photo:

1. Weight of each vertex as a photo sample (models/geometry/zbuffer.py gives visibility): visible x a ramp on
   how squarely it faces the camera (grazing surfaces smear a few pixels over many texels) x a soft
   ellipse around the landmarks (outside it the photo shows hair, shirt or background as often as
   head), then eroded over the mesh a few rings so that photo, mirror and fill blend over a band.
2. Fill colour of each vertex (fill.py here): a 3D push-pull of the well-seen vertices' colours.
3. Per texel, barycentric blends of those per-vertex values (one ``embedding_bag`` over a nine-column
   table) give its photo position, its weight, its mirror point's position and weight, and its fill
   colour; the photo is sampled at both points (one ``grid_sample``) and the texel is
       w · photo + (1 - w) · (w_m · mirrored photo + (1 - w_m) · fill).
   Weights vary smoothly from vertex to vertex, so no texel switches source with a hard edge. The
   fill carries a fixed, seeded grain of ±1.5 levels, so a smooth fill does not quantise into flat
   uint8 bands (and reads as skin rather than plastic).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import distance_transform_edt
from torch import Tensor

from face3d.models.backends.ict.fill import PushPullFill
from face3d.models.backends.ict.regions import openings
from face3d.models.backends.ict.topology import HeadTopology
from face3d.models.geometry.uv_raster import rasterize_atlas
from face3d.models.geometry.zbuffer import DepthTest

FACING_RAMP = (0.2, 0.55)  # cosine to the camera: no weight below, full weight above
TRUST_ELLIPSE = (1.3, 1.7)  # radius, 1 = the landmarks' own ellipse: full trust within, none beyond
TRUST_LIFT = 0.15  # the trusted ellipse's centre sits this share of its half-height above theirs
CHIN_RAMP = (0.0, 0.12)  # below the chin (in face heights, forehead to chin): full trust, none
ERODE_RINGS = 3
SKIN_PARTS = ("face", "head_neck")  # depth-tested; the inner parts are seen through the openings
GRAIN = 1.5  # amplitude (0..255 levels) of the fixed fine grain added to filled texels


def _smoothstep(x: Tensor, lo: float, hi: float) -> Tensor:
    t = ((x - lo) / (hi - lo)).clamp(0, 1)
    return t * t * (3 - 2 * t)


class HeadBaker:
    """Bakes (F, uv_size, uv_size, 3) uint8 atlases, sampling at ``sample_size`` and upscaling."""

    def __init__(
        self, topology: HeadTopology, fill: PushPullFill, depth: DepthTest, uv_size: int, sample_size: int,
        device: torch.device | str = "cpu",
    ) -> None:  # fmt: skip
        self.uv_size, self.sample_size = uv_size, sample_size
        self.device = torch.device(device)
        self.fill, self.depth = fill, depth
        owner, bary = rasterize_atlas(topology.uvs, topology.triangle_uvs, sample_size)
        inside = owner >= 0
        flat, vertices = np.flatnonzero(inside), topology.vertex_count
        tri = owner.ravel()[flat]
        vid = topology.triangles[tri]
        _, (rows, cols) = distance_transform_edt(~inside, return_indices=True)
        rank = np.zeros(owner.size, np.int64)
        rank[flat] = np.arange(len(flat))

        def put(a: np.ndarray) -> Tensor:
            return torch.from_numpy(np.array(a)).to(self.device)  # a copy: topology arrays are read-only

        self._vid, self._bary = put(vid), put(bary.reshape(-1, 3)[flat])
        self._mirror = put(topology.mirror)
        self._source = put(rank[(rows * sample_size + cols).ravel()])  # every texel <- a head texel
        # Coverage is linear in the vertex weights: the face tile's mean texel weight is one dot
        # product with each vertex's summed barycentric share of the tile (no per-texel pass).
        face_tile = topology.triangle_material[tri] == topology.material_names.index("M_Face")
        share = np.bincount(vid[face_tile].ravel(), bary.reshape(-1, 3)[flat][face_tile].ravel(), vertices)
        self._tile_share = put((share / max(int(face_tile.sum()), 1)).astype(np.float32))
        # Erosion reads each vertex's neighbours as one bag (CSR: neighbours sorted by vertex, each
        # weighted 1 / degree), so a ring is one ``embedding_bag`` instead of index_select + index_add_.
        edges = np.unique(np.sort(topology.triangles[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1), axis=0)
        both = np.concatenate([edges, edges[:, ::-1]])
        both = both[np.lexsort((both[:, 0], both[:, 1]))]  # by destination vertex
        self._ring = put(both[:, 0])
        self._ring_offsets = put(np.searchsorted(both[:, 1], np.arange(vertices)))
        degree = np.bincount(both[:, 1], minlength=vertices)
        self._ring_weights = put((1 / degree[both[:, 1]]).astype(np.float32))
        parts = [topology.part_names[p] for p in topology.vertex_part]
        self._skin = put(np.array([p in SKIN_PARTS for p in parts]))
        self._eye_part = put(np.array([p.startswith("eye") for p in parts]))
        grain = np.random.default_rng(0).standard_normal(len(flat)).astype(np.float32)
        self._grain = put(grain * GRAIN)

    def vertex_weights(self, verts: Tensor, sizes: Tensor, landmarks: Tensor) -> Tensor:
        """(F, V) 0..1: how much each vertex's photo sample is trusted (step 1 of the module doc)."""
        width, height = sizes[:, 0].to(verts), sizes[:, 1].to(verts)
        visible, facing = self.depth(verts, width, height)
        in_eye, in_mouth = openings(verts, landmarks)
        opening = torch.where(self._eye_part, in_eye, in_mouth)
        x, y = verts[..., 0], verts[..., 1]
        in_photo = (x >= 0) & (y >= 0) & (x <= width[:, None] - 1) & (y <= height[:, None] - 1)
        # Skin: depth-tested, never inside an opening; inner parts: inside their opening, facing us.
        seen = torch.where(self._skin, visible & ~(in_eye | in_mouth), opening & in_photo & (facing > 0))
        xy = landmarks[:, :468, :2].to(verts)
        centre = xy.mean(dim=1)
        offset = xy - centre[:, None]
        cov = offset.transpose(1, 2) @ offset / xy.shape[1]  # (F, 2, 2)
        sxx, sxy, syy = cov[:, 0, 0, None], cov[:, 0, 1, None], cov[:, 1, 1, None]
        d = verts[..., :2] - centre[:, None]
        dx, dy = d[..., 0], d[..., 1] + TRUST_LIFT * 2 * syy.sqrt()  # image y points down: lift = minus
        m2 = (dx * dx * syy - 2 * dx * dy * sxy + dy * dy * sxx) / (sxx * syy - sxy * sxy).clamp_min(1e-6)
        radius = m2.clamp_min(0).sqrt() / 2  # 1 on the rim of a uniformly filled ellipse
        trust = 1 - _smoothstep(radius, *TRUST_ELLIPSE)
        # Below the chin a photo shows collars and shadows more often than neck: the fill takes over.
        top, chin = landmarks[:, 10, :2].to(verts), landmarks[:, 152, :2].to(verts)
        axis = chin - top
        length = axis.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        below = ((verts[..., :2] - chin[:, None]) * (axis / length)[:, None]).sum(-1) / length
        trust = trust * (1 - _smoothstep(below, *CHIN_RAMP))
        weight = seen.to(verts) * _smoothstep(facing, *FACING_RAMP) * trust
        rows = weight.T.contiguous()  # (V, F): one bag of neighbours per vertex
        for _ in range(ERODE_RINGS):  # each ring: no more than the mean of the neighbours
            mean = F.embedding_bag(
                self._ring, rows, self._ring_offsets, mode="sum", per_sample_weights=self._ring_weights
            )  # no neighbour: an empty bag, 0
            rows = torch.minimum(rows, mean)
        return rows.T

    def bake(
        self, images: Tensor, sizes: Tensor, face_image: Tensor, verts: Tensor, landmarks: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Textures (F, S, S, 3) uint8 (row 0 = top = v 1) and coverage (F,): the share of the face
        tile's texels the photo shows directly (their photo weight, averaged).

        images (B, 3, H, W) uint8 padded batch; sizes (B, 2) w, h; face_image (F,); verts (F, V, 3)
        image space (px, z smaller = closer); landmarks (F, N, 3) image space (the trusted region).
        """
        faces, texels = len(verts), len(self._vid)
        verts = verts.float()
        weight = self.vertex_weights(verts, sizes[face_image], landmarks)
        window, to_grid = photo_windows(images, sizes, face_image, verts, weight)
        at = to_grid(verts[:, None, :, :2])[:, 0]  # (F, V, 2) grid coordinates (affine: blend after)
        colours = F.grid_sample(window, at[:, None], align_corners=False, padding_mode="border")
        filled = self.fill(colours[:, :, 0].transpose(1, 2), weight)  # (F, V, 3)
        own = torch.cat([at, weight[..., None]], dim=-1)  # (F, V, 3)
        mirror = own.index_select(1, self._mirror)  # each vertex's mirror point, as the vertex's own
        table = torch.cat([own[..., :2], mirror[..., :2], own[..., 2:], mirror[..., 2:], filled], dim=-1)
        # One bag per texel for all nine values (photo point, mirror point, both weights, fill): the
        # cost is the lookups, not the columns.
        texel = F.embedding_bag(
            self._vid, table.transpose(0, 1).reshape(-1, faces * 9), per_sample_weights=self._bary, mode="sum"
        ).view(texels, faces, 9)
        # Both points in one grid_sample, as rows 0 (photo) and 1 (mirror) of an (F, 2, N) grid: the
        # CPU kernel vectorises along the last axis, so the texels must run along it.
        grid = texel[..., :4].reshape(texels, faces, 2, 2).permute(1, 2, 0, 3).contiguous()
        sampled = F.grid_sample(window, grid, align_corners=False, padding_mode="border")  # (F, 3, 2, N)
        w_own, w_mirror = (texel[..., k].T.contiguous()[:, None] for k in (4, 5))  # (F, 1, N)
        # w·photo + (1 - w)·(w_m·mirrored + (1 - w_m)·fill), the fill with its fixed grain; channels
        # first, so every operand runs contiguously along the texels.
        colour = torch.empty((faces, 3, texels), device=texel.device)
        torch.add(texel[..., 6:].permute(1, 2, 0), self._grain, out=colour)
        colour = colour.lerp_(sampled[:, :, 1], w_mirror).lerp_(sampled[:, :, 0], w_own)
        coverage = weight @ self._tile_share
        # Texels -> the S x S image (each atlas texel copies its nearest head texel): RGB packed into
        # one int32 per texel, so the gather moves whole texels instead of single bytes.
        rgba = torch.empty((faces, texels, 4), dtype=torch.uint8, device=colour.device)
        rgba[..., :3] = colour.clamp_(0, 255).add_(0.5).transpose(1, 2)
        packed = rgba.view(torch.int32)[..., 0].index_select(1, self._source)  # (F, S²)
        size = self.sample_size
        atlas = packed.view(torch.uint8).view(faces, size, size, 4)[..., :3].permute(0, 3, 1, 2)
        out = (self.uv_size, self.uv_size)
        if size != self.uv_size and self.device.type == "cpu":
            # The CPU's uint8 channels-last kernels: with antialias (a no-op when enlarging: the
            # same triangle filter, the same bytes) it takes the separable SIMD path, ~2x faster.
            atlas = F.interpolate(
                atlas.contiguous(memory_format=torch.channels_last), size=out, mode="bilinear", antialias=True
            )
        elif size != self.uv_size:
            atlas = F.interpolate(atlas.float(), size=out, mode="bilinear").add_(0.5).to(torch.uint8)
        return atlas.permute(0, 2, 3, 1), coverage


def photo_windows(
    images: Tensor, sizes: Tensor, face_image: Tensor, verts: Tensor, weight: Tensor
) -> tuple[Tensor, Callable[..., Tensor]]:
    """Float copies (F, 3, h, w) of only the photo windows the faces' trusted vertices span, and the map
    from image pixels to ``grid_sample`` coordinates of each face's window.

    Converting just those windows to float (not whole photos) saves most of the memory traffic on
    large photos; windows share one size (the largest, within the photo) and shift to stay inside
    it, so ``grid_sample``'s border clamping replicates the photo's own edge (only points of weight 0
    fall outside a window).
    """
    xy = verts[..., :2]
    seen = weight[..., None] > 0
    big = torch.finfo(xy.dtype).max
    lo = torch.where(seen, xy, big).amin(dim=1) - 2
    hi = torch.where(seen, xy, -big).amax(dim=1) + 3
    lo, hi = torch.minimum(lo, hi), torch.maximum(lo, hi)  # a face with no trusted vertex: empty box
    height, width = images.shape[-2:]
    boxes = torch.cat([lo, hi], dim=1).cpu().tolist()  # one sync
    limits = [(int(w), int(h)) for w, h in sizes[face_image].cpu().tolist()]  # slice bounds: ints
    win_w = max(1, min(width, max(math.ceil(b[2] - max(b[0], 0)) for b in boxes)))
    win_h = max(1, min(height, max(math.ceil(b[3] - max(b[1], 0)) for b in boxes)))
    window = torch.zeros((len(boxes), 3, win_h, win_w), device=images.device)
    origins = []
    for k, (image, box, (w, h)) in enumerate(zip(face_image.tolist(), boxes, limits, strict=True)):
        x0 = int(min(max(box[0], 0), max(w - win_w, 0)))
        y0 = int(min(max(box[1], 0), max(h - win_h, 0)))
        crop = images[image, :, y0 : min(y0 + win_h, h), x0 : min(x0 + win_w, w)]
        window[k, :, : crop.shape[1], : crop.shape[2]] = crop  # uint8 -> float
        origins.append((x0, y0))
    origin = verts.new_tensor(origins)[:, None, None, :]
    # Pixel k's centre sits at k; with align_corners=False, -1 and 1 are the outer pixel edges.
    scale = verts.new_tensor([2.0 / win_w, 2.0 / win_h])

    def to_grid(points: Tensor, face: int | None = None) -> Tensor:
        """(F, 1, n, 2) image points of every face -> grid coordinates; or (1, 1, n, 2) of one ``face``."""
        shift = origin if face is None else origin[face : face + 1]
        return (points - shift + 0.5) * scale - 1

    return window, to_grid
