"""Bake a photo onto the ICT head's texture atlas (topology.py here), batched over faces in torch.

Per texture size, once: the atlas is rasterised (models/geometry/uv_raster.py) into the list of texels that
lie on the head (each with its triangle's three vertex ids and barycentric weights, and the same
for its left/right mirror point), and every other texel is pointed at its nearest head texel, so
the atlas has no background for bilinear or mip filtering to bleed in.

Per call, for F faces with their fitted vertices projected into the photo:

1. Weight of each vertex as a photo sample (models/geometry/zbuffer.py gives visibility): visible x a ramp on
   how squarely it faces the camera (normal · view: none below 0.3, where a few pixels smear over
   many texels) x a soft ellipse around the landmarks (outside it the photo shows hair, shirt or
   background as often as head) x ramps on its distance from occlusion boundaries (vertex rings
   from hidden skin) and from the visible head's outline in the photo (cells of a coarse grid), so
   that photo, mirror and fill blend over a band and never meet at an edge.
   These rules are for the face's skin, where smearing and background show. Outside the face's core
   (the landmarks' ellipse: temples, the sides and top of the head) the photo shows hair, and hair
   seen at a slant is still hair: there the facing ramp starts at 0.2, the outline from the ears up
   has no ramp (it runs through hair), and the fill takes the weights unsquared (step 4), so the
   hair the photo shows carries over the head; the left/right balance (step 2) keeps to the core.
   Occluder rejection (step 3) ends at the brows: a fringe is the person's hair, not an occluder.
2. The photo's lighting (lighting.py): second-order SH fitted to the skin's colours and the head's
   normals; with ``lighting="remove"`` every photo sample is divided by it (a per-vertex gain),
   what it leaves of a left/right difference is evened out at a scale of centimetres (``balance``),
   and deep shadow (little light, or far darker than the mirror point) gives way to the mirror, as
   does a hard shadow the smooth light does not follow (``unlit``: still far darker than the face's
   median skin once divided out, as down the nose of a side-lit face, where no mirror point helps).
   A shadow the division lifts takes the skin's hue (``shadow_hue``: it was lit by what is around,
   a window's teal, the sky), and beyond the face's core a hue no skin or hair has (``unnatural_hue``:
   the background beside a fit a few pixels wide) is not baked.
3. Occluders (``occluders``): skin much darker than its mirror point once the light is divided out
   (one side's hair or hand, a cast shadow), or much brighter than the skin light and its mirror
   point (a highlight), is not taken from the photo (with "keep" too: such a shadow is no skin).
   Nor are glasses frames (glasses.py here: on both sides, so the mirror never finds them) or,
   where hands are looked for, the skin under a hand (models/nets/hands.py): both ``covered``.
4. Fill colour of each vertex (fill.py here): a 3D push-pull of the well-seen vertices' (de-lit)
   colours; the eyeballs take an iris and pupil (the visible eye's iris colour, from the darker
   part of what lands on the fitted iris) where the photo shows neither eye; teeth take only
   near-white samples, gums, tongue and the mouth's socket only red, lit ones (``mouth_samples``);
   the neck only samples of the face's skin colour (``not_skin``: a collar, a scarf, a shirt).
5. Per texel, barycentric blends of per-vertex values (``embedding_bag`` over a table of columns)
   give its photo position, its mirror point's position and the terms of the blend; the photo is
   sampled at both points (one ``grid_sample``), only at texels of triangles that take the photo
   or its mirror (about half the atlas from a frontal photo; the rest is fill), and the texel is
       w · g·photo + (1 - w) · (w_m · (g_m·mirrored + fill - fill_m) + (1 - w_m) · fill)
   (w, g: the photo weight and gain; _m: the mirror point's), expanded per vertex into a base
   colour and three factors, which interpolate smoothly as their parts do.
   The mirrored sample brings its detail (high band) but the low band of this side (two-band
   blending: ``fill - fill_m`` swaps the mirror point's smooth colour for this point's), so a
   mirrored half continues the visible half's tone with no seam line. Weights vary smoothly from
   vertex to vertex, so no texel switches source with a hard edge. The fill carries a fixed, seeded
   dither (triangular, ±1 level: the least that decorrelates the rounding error), so a smooth fill
   does not quantise into flat uint8 bands. A Gaussian grain of ±1.5 levels did that too, but it is
   noise the PNG must store: 2.78 against 1.71 MB and 17.6 against 12.2 ms of fpng per 2048² atlas
   (face_001, a scratch timing), the texture written twice per default request (PNG and GLB).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import distance_transform_edt
from torch import Tensor

from face3d.models.backends.ict.fill import PushPullFill
from face3d.models.backends.ict.glasses import glasses_frames
from face3d.models.backends.ict.lighting import (
    GAMMA,
    LUMA,
    delight_gain,
    fit_lighting,
    log_chroma,
    luma,
    relative_light,
    sh_basis,
)
from face3d.models.backends.ict.regions import openings
from face3d.models.backends.ict.topology import HeadTopology
from face3d.models.geometry.ramps import smoothstep
from face3d.models.geometry.uv_raster import rasterize_atlas
from face3d.models.geometry.zbuffer import DepthTest

FACING_RAMP = (0.3, 0.55)  # normal · view: no weight below (grazing), full weight above
HAIR_FACING_RAMP = (0.2, 0.55)  # the same outside the face's core: hair seen at a slant is still hair
TRUST_ELLIPSE = (1.3, 1.7)  # radius, 1 = the landmarks' own ellipse: full trust within, none beyond
TRUST_LIFT = 0.15  # the trusted ellipse's centre sits this share of its half-height above theirs
CORE_ELLIPSE = (1.1, 1.35)  # radius as TRUST_ELLIPSE: the face's core (skin) within, temples and scalp beyond
SQUARED_FILL = (0.95, 1.2)  # radius as TRUST_ELLIPSE: the fill squares the weights within, not beyond
BROW_RAMP = (0.72, 0.88)  # height (chin 0, landmark 10 1; brows ~0.86): occluder rejection ends
HAIR_HEIGHT = (0.4, 0.6)  # height from which, outside the core, the outline runs through hair
CHIN_RAMP = (0.0, 0.12)  # below the chin (in face heights, forehead to chin): full trust, none
SILHOUETTE_GRID, SILHOUETTE_CELLS = 48, 4  # the outline's ramp: cells of a grid over the visible head
BOUNDARY_RINGS = 4  # the photo's weight ramps up over this many vertex rings from where it stops
OCCLUDER = (0.5, 1.0)  # log(de-lit mirror point / de-lit vertex): an occluder from, fully from
HIGHLIGHT = (0.7, 1.2)  # log(colour / skin model), with the mirror point darker: a highlight from, fully
OCCLUDER_MAX = 0.9  # an occluder's photo sample keeps at least 1 - this of its weight
SKIN_PARTS = ("face", "head_neck")  # depth-tested; the inner parts are seen through the openings
DITHER = 1.0  # half-width (0..255 levels) of the fixed triangular dither added to filled texels
IRIS = ((0.72, 0.9), (0.93, 0.97))  # cosine from the eye's axis: iris edge ramp, pupil edge ramp
IRIS_PRIOR = (92.0, 64.0, 48.0)  # an iris colour when the photo shows neither eye
IRIS_BRIGHT = (1.1, 1.5)  # luma / the iris samples' mean: a sample on the iris is kept below, not above
TEETH_LUMA = (70.0, 120.0)  # sRGB luma of a teeth sample: no photo weight below, full above
TEETH_CHROMA = (0.15, 0.28)  # (max - min) / max of a teeth sample's sRGB: full weight below, none above
GUMS_LUMA = (30.0, 55.0)  # sRGB luma of a gums or tongue sample: no photo weight below, full above
COLOURFUL = (0.03, 0.1)  # the skin's median chroma: a greyscale photo below, colour above
GUMS_RED = (0.08, 0.2)  # (r - (g + b) / 2) / r of a gums or tongue sample: no weight below, full above
LIGHTING_MODES = ("remove", "keep")
SHIFT_RINGS = 6  # how far (vertex rings) from photo-backed skin a mirrored texel takes this side's tone
BALANCE_RINGS = 8  # the scale (vertex rings) at which left and right brightness are compared
BALANCE_RANGE = (0.4, 2.5)  # the most a left/right brightness ratio is evened out (each side: its root)
DARKER_RAMP = (2.0, 3.5)  # smooth brightness of the mirror point / this point: photo weight fades
NECK_RAMP = (0.5, 2.0)  # cm below the chin (neutral head): the neck's skin rule starts, holds fully
NECK_BEHIND = 3.0  # cm behind the chin's front from which depth counts as height (under the jaw)
NOT_SKIN = (0.25, 0.5)  # weighted log-colour distance from the face's skin: a neck sample fades, gone
SKIN_DISTANCE_WEIGHTS = (1.0, 1.0, 0.3)  # log r/g, log b/g, log brightness (shadow is allowed)
UNNATURAL = (0.1, 0.3)  # log-chroma beyond grey towards blue or green: no skin or hair hue from, fully
SHADOW_LIFT = (1.25, 1.8)  # sRGB luma gain of the de-lighting: a shadow's hue gives way from, fully
UNLIT = (1.2, 1.8)  # log(the face's median de-lit skin luma / here's): a hard shadow from, fully from
SHADOW_RAMP = (0.2, 0.45)  # with "remove": estimated light / its mean on the skin, no photo weight below


def seen_median(values: Tensor, seen: Tensor, fallback: float | None = None) -> Tensor:
    """(F, ...) per face, the median of ``values`` (F, V, ...) over its ``seen`` (F, V) vertices: the
    face's typical skin, by which the rules below judge a sample. Where a face has no seen vertex:
    the median of all its vertices, or ``fallback``."""
    rows = []
    for row, mask in zip(values, seen, strict=True):
        if mask.any():
            rows.append(row[mask].median(dim=0).values)
        elif fallback is None:
            rows.append(row.median(dim=0).values)
        else:
            rows.append(row.new_full(row.shape[1:], fallback))
    return torch.stack(rows)


@dataclass
class VertexSources:
    """Per vertex of F faces, what the texels blend (bake step 1-4), and the photo windows."""

    weight: Tensor  # (F, V) photo weight
    facing: Tensor  # (F, V) normal · view
    gain: Tensor  # (F, V, 3) sRGB gain of photo samples (1 with lighting="keep")
    filled: Tensor  # (F, V, 3) fill colour
    at: Tensor  # (F, V, 2) grid coordinates of the vertex in its window
    window: Tensor  # (F, 3, h, w) photo windows
    lighting: Tensor  # (F, 3, 9) SH coefficients (lighting.py)
    occluded: Tensor  # (F, V) 0..1 how much of a vertex's photo sample was judged an occluder
    core: Tensor  # (F, V) 0..1 the face's core (its skin), where the strict facing ramp holds


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
        self._triangle, self._triangles = put(tri), put(topology.triangles)  # texel -> triangle -> vertices
        self._mirror = put(topology.mirror)
        self._source = put(rank[(rows * sample_size + cols).ravel()])  # every texel <- a head texel
        # Coverage is linear in the vertex weights: the face tile's mean texel weight is one dot
        # product with each vertex's summed barycentric share of the tile (no per-texel pass).
        face_tile = topology.triangle_material[tri] == topology.material_names.index("M_Face")
        share = np.bincount(vid[face_tile].ravel(), bary.reshape(-1, 3)[flat][face_tile].ravel(), vertices)
        self._tile_share = put((share / max(int(face_tile.sum()), 1)).astype(np.float32))
        # Ring operations read each vertex's neighbours as one bag (CSR: neighbours sorted by vertex,
        # each weighted 1 / degree), so a ring is one ``embedding_bag`` instead of index_select + index_add_.
        edges = np.unique(np.sort(topology.triangles[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1), axis=0)
        both = np.concatenate([edges, edges[:, ::-1]])
        both = both[np.lexsort((both[:, 0], both[:, 1]))]  # by destination vertex
        self._ring = put(both[:, 0])
        self._ring_offsets = put(np.searchsorted(both[:, 1], np.arange(vertices)))
        degree = np.bincount(both[:, 1], minlength=vertices)
        self._ring_weights = put((1 / degree[both[:, 1]]).astype(np.float32))
        parts = [topology.part_names[p] for p in topology.vertex_part]
        self._skin = put(np.array([p in SKIN_PARTS for p in parts]))
        self._face_part = put(np.array([p == "face" for p in parts]))
        self._neck = put(self._neck_ramp(topology, parts))
        self._fit_ids = put(np.flatnonzero([p == "face" for p in parts])[::3])
        self._eye_part = put(np.array([p.startswith("eye") for p in parts]))
        self._teeth = put(np.array([p == "teeth" for p in parts]))
        self._gums = put(np.array([p in ("gums_tongue", "mouth_socket") for p in parts]))  # the red inside
        self._iris, self._pupil = (put(a) for a in _iris_maps(topology, parts))
        rng = np.random.default_rng(0)  # triangular: the difference of two uniform draws
        self._dither = put(((rng.random(len(flat)) - rng.random(len(flat))) * DITHER).astype(np.float32))

    def _spread(self, rows: Tensor) -> Tensor:
        """(V, F) -> each vertex's neighbours' mean."""
        return F.embedding_bag(
            self._ring, rows, self._ring_offsets, mode="sum", per_sample_weights=self._ring_weights
        )  # no neighbour: an empty bag, 0

    def _texels(self, table: Tensor, texels: Tensor | None = None) -> Tensor:
        """(F, V, C) per-vertex values -> (N, F, C) at every texel (or at the ``texels`` ids), each a
        barycentric blend of its triangle's three vertices: one bag per texel for all columns and
        faces, so the cost is the lookups."""
        faces, columns = table.shape[0], table.shape[-1]
        vid, bary = self._vid, self._bary
        if texels is not None:
            vid, bary = vid.index_select(0, texels), bary.index_select(0, texels)
        rows = table.transpose(0, 1).reshape(-1, faces * columns)  # (V, F * C)
        return F.embedding_bag(vid, rows, per_sample_weights=bary, mode="sum").view(len(vid), faces, columns)

    def boundary_ramp(self, unseen: Tensor) -> Tensor:
        """(F, V) 0..1: rises over BOUNDARY_RINGS vertex rings away from the ``unseen`` (F, V) vertices."""
        reached = unseen.T.to(torch.float32).contiguous()
        rings = torch.zeros_like(reached)
        for _ in range(BOUNDARY_RINGS):  # a ring further: a neighbour reached (the sum kernel is fast)
            reached = torch.maximum(reached, (self._spread(reached) > 0).to(reached))
            rings += 1 - reached
        return smoothstep(rings.T + 1, 0.0, BOUNDARY_RINGS + 1.0) * (1 - unseen.to(rings))

    def silhouette_ramp(self, verts: Tensor, visible: Tensor) -> Tensor:
        """(F, V) 0..1: rises over SILHOUETTE_CELLS cells of a SILHOUETTE_GRID² grid over the head's
        visible extent, inwards from the visible head's outline in the photo (where a fit that is a
        few pixels wide samples background)."""
        faces, grid = len(verts), SILHOUETTE_GRID
        shown = visible  # every part: the eyes and the open mouth are inside the outline
        xy = verts[..., :2]
        big = torch.finfo(xy.dtype).max
        lo = torch.where(shown[..., None], xy, big).amin(dim=1)
        hi = torch.where(shown[..., None], xy, -big).amax(dim=1)
        cell = ((hi - lo).amax(dim=1).clamp_min(1e-3) / (grid - 1))[:, None, None]
        ij = ((xy - lo[:, None]) / cell).round().long().clamp(0, grid - 1)
        index = ij[..., 1] * grid + ij[..., 0]
        mask = verts.new_zeros((faces, grid * grid))
        mask.scatter_reduce_(1, index, shown.to(mask), "amax")
        mask = mask.view(faces, 1, grid, grid)
        mask = -F.max_pool2d(-F.max_pool2d(mask, 5, 1, 2), 5, 1, 2)  # closed: no holes between vertices
        depth = torch.zeros_like(mask)
        for _ in range(SILHOUETTE_CELLS):  # cells to the outline: the number of erosions that keep it
            mask = -F.max_pool2d(F.pad(-mask, (1, 1, 1, 1), value=0.0), 3, 1, 0)
            depth += mask
        inside = depth.view(faces, -1).gather(1, index)
        return smoothstep(inside, 0.0, float(SILHOUETTE_CELLS))

    def vertex_weights(
        self,
        verts: Tensor,
        sizes: Tensor,
        landmarks: Tensor,
        seen_facing: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(F, V) 0..1 trust of each vertex's photo sample before the boundary ramps (step 1 of the
        module doc), (F, V) bool: the skin the depth test hides (where occlusion boundaries run),
        (F, V) each vertex's radius in the landmarks' ellipse (as TRUST_ELLIPSE: 1 on the face's rim;
        the face's core lies within CORE_ELLIPSE, temples and scalp beyond), and (F, V) its height
        along the face (0 at the chin, 1 at landmark 10)."""
        width, height = sizes[:, 0].to(verts), sizes[:, 1].to(verts)
        visible, facing = seen_facing if seen_facing is not None else self.depth(verts, width, height)
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
        trust = 1 - smoothstep(radius, *TRUST_ELLIPSE)
        core = 1 - smoothstep(radius, *CORE_ELLIPSE)
        # Below the chin a photo shows collars and shadows more often than neck: the fill takes over.
        top, chin = landmarks[:, 10, :2].to(verts), landmarks[:, 152, :2].to(verts)
        axis = chin - top
        length = axis.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        below = ((verts[..., :2] - chin[:, None]) * (axis / length)[:, None]).sum(-1) / length
        trust = trust * (1 - smoothstep(below, *CHIN_RAMP))
        unseen = ~(visible | ~self._skin)  # hidden skin: the facing ramp and the openings are smooth already
        facing_ramp = torch.lerp(
            smoothstep(facing, *HAIR_FACING_RAMP), smoothstep(facing, *FACING_RAMP), core
        )
        return seen.to(verts) * facing_ramp * trust, unseen, radius, -below

    def vertex_sources(
        self, images: Tensor, sizes: Tensor, face_image: Tensor, verts: Tensor, landmarks: Tensor,
        lighting: str = "remove", handed: Tensor | None = None,
    ) -> VertexSources:  # fmt: skip
        """Steps 1-4 of the module doc for F faces (``bake``'s arguments)."""
        if lighting not in LIGHTING_MODES:
            raise ValueError(f"lighting must be one of {LIGHTING_MODES}, got {lighting!r}")
        verts = verts.float()
        face_sizes = sizes[face_image]
        visible, facing, normals = self.depth.see(
            verts, face_sizes[:, 0].to(verts), face_sizes[:, 1].to(verts)
        )
        trust, unseen, radius, height = self.vertex_weights(verts, face_sizes, landmarks, (visible, facing))
        core = 1 - smoothstep(radius, *CORE_ELLIPSE)
        below_brows = core * (1 - smoothstep(height, *BROW_RAMP))
        window, to_grid = photo_windows(images, sizes, face_image, verts, trust)
        at = to_grid(verts[:, None, :, :2])[:, 0]  # (F, V, 2) grid coordinates (affine: blend after)
        colours = F.grid_sample(window, at[:, None], align_corners=False, padding_mode="border")
        colours = colours[:, :, 0].transpose(1, 2)  # (F, V, 3)
        covered, _ = glasses_frames(window, to_grid(landmarks[:, None, :, :2].to(verts))[:, 0], at)
        if handed is not None:  # a hand over the skin is no skin either (models/nets/hands.py)
            covered = torch.maximum(covered, handed.to(covered))
        covered = covered * self._skin  # what covers the eyes' openings is the eyes' business
        camera = normals * normals.new_tensor([1.0, -1.0, -1.0])  # x right, y up, z towards the camera
        # Beside and above the face's core, from the ears up, the outline runs through hair, which is
        # what the photo shows there (hair stands out beyond the fitted skull): no silhouette ramp.
        hair = (1 - core) * smoothstep(height, *HAIR_HEIGHT)
        outline = 1 - (1 - hair) * (1 - self.silhouette_ramp(verts, visible))
        skin_ramp = self.boundary_ramp(unseen) * outline
        skin = trust * self._face_part * skin_ramp * (1 - covered)
        ids = self._fit_ids  # a third of the face's vertices: plenty for nine coefficients a channel
        coefficients, mean = fit_lighting(colours[:, ids], camera[:, ids], skin[:, ids])
        occluded = self.occluders(colours, camera, coefficients, skin) * below_brows
        weight = skin_ramp * trust * (1 - occluded) * (1 - covered)
        if lighting == "keep":
            gain = torch.ones_like(colours)
        else:  # deep shadow holds noise and clipped blacks, not skin: the mirror or fill takes over
            light = relative_light(coefficients, mean, camera)
            gain = delight_gain(light)
            gain = gain * self.shadow_hue(colours, gain, skin)
            weight = weight * smoothstep(light.mean(dim=-1), *SHADOW_RAMP)
            balance, balanced = self.balance(colours * gain, weight)
            # Hair differs from side to side by style (a side parting), not by light: the balance
            # evens out the face's core.
            weight = torch.lerp(weight, balanced, core)
            gain = gain * balance.pow(core[..., None])
        delit = colours * gain
        if lighting == "remove":
            weight = weight * (1 - self.unlit(delit, weight * self._face_part) * core)
        weight = weight * self.mouth_samples(delit, skin)
        weight = weight * (1 - self._neck * self.not_skin(delit, skin))
        # Beyond the face's core, towards the outline, a fit a few pixels wide samples the background:
        # a colour no skin or hair has (a car's teal, a blue sky or shirt) is not baked there.
        away = (1 - core) * self._skin * (1 - self._neck)
        weight = weight * (1 - away * unnatural_hue(colours))
        # Squared on the face: a voxel of many faint samples (shadow, occluder edges) must not outvote
        # the pull. Not from the temples up and back, where the faint samples are the hair (seen at a
        # slant) that the fill carries over the head; squared, the face's skin outvotes it (bald).
        squared = 1 - smoothstep(radius, *SQUARED_FILL)
        filled = self.fill(delit, weight * torch.lerp(torch.ones_like(weight), weight, squared))
        filled, on_iris = self.eyes(filled, delit, weight)
        weight = weight * on_iris
        return VertexSources(weight, facing, gain, filled, at, window, coefficients, occluded, core)

    @staticmethod
    def _neck_ramp(topology: HeadTopology, parts: list[str]) -> np.ndarray:
        """(V,) 0..1 the neck: skin from NECK_RAMP below the chin down, on the neutral head, where
        skin behind the chin's front counts lower by half its depth (under the jaw, beside the neck, a
        collar shows up at the chin's height; the chin and jaw, and a beard on them, are not neck)."""
        from face3d.models.backends.ict.model import load_ict_model

        model = load_ict_model()
        chin = model.neutral[model.landmarks68[8]]
        behind = np.maximum(chin[2] - NECK_BEHIND - model.neutral[:, 2], 0)
        below = chin[1] - model.neutral[:, 1] + behind / 2  # cm below the chin
        skin = np.array([p in SKIN_PARTS for p in parts])
        return (smoothstep(torch.from_numpy(below), *NECK_RAMP).numpy() * skin).astype(np.float32)

    def not_skin(self, colours: Tensor, skin: Tensor) -> Tensor:
        """(F, V) 0..1 how far each sample's colour is from the face's skin (its weighted median over
        the well-seen ``skin``): far in chroma (log r/g, log b/g) or, less strictly, in brightness.
        The neck takes only skin-coloured samples: below the chin a photo shows collars, scarves and
        hair as often as neck, and the fit's neck reaches into them."""
        brightness = colours.clamp_min(1.0).log().mean(-1, keepdim=True)
        features = torch.cat([log_chroma(colours), brightness], dim=-1)
        typical = seen_median(features, skin > 0.5)  # (F, 3)
        distance = ((features - typical[:, None]).abs() * features.new_tensor(SKIN_DISTANCE_WEIGHTS)).sum(-1)
        return smoothstep(distance, *NOT_SKIN)

    def mouth_samples(self, colours: Tensor, skin: Tensor) -> Tensor:
        """(F, V) 0..1 trust of the photo's samples on the teeth, gums and tongue (1 elsewhere).

        The inner lip contour never matches the fitted mouth exactly, so these parts also receive
        lips, the mouth's shadow and each other's colours. Teeth are bright and near white: a dark
        sample is shadow or a gap, a coloured one is lip or gum. Gums and the tongue are red and lit:
        a dark sample is the mouth's depth, a white one a tooth in front. What is left out, the fill
        takes (what the photo shows of that part elsewhere, else a clean prior, fill.py). In a photo
        without colour (the well-seen ``skin`` has none), redness tells nothing: a red prior would
        be the only colour on the head, so the gums' test keeps to brightness."""
        bright = luma(colours)
        top, low = colours.amax(dim=-1), colours.amin(dim=-1)
        chroma = (top - low) / top.clamp_min(1.0)
        red, green, blue = colours.unbind(-1)
        redness = (red - (green + blue) / 2) / red.clamp_min(1.0)
        colourful = smoothstep(seen_median(chroma, skin > 0.5, fallback=1.0), *COLOURFUL)[:, None]
        teeth = smoothstep(bright, *TEETH_LUMA) * (1 - smoothstep(chroma, *TEETH_CHROMA))
        gums = smoothstep(bright, *GUMS_LUMA) * torch.lerp(
            torch.ones_like(bright), smoothstep(redness, *GUMS_RED), colourful
        )
        return torch.where(self._teeth, teeth, torch.where(self._gums, gums, 1.0))

    def shadow_hue(self, colours: Tensor, gain: Tensor, skin: Tensor) -> Tensor:
        """(F, V, 3) extra gains that give the samples a de-lit shadow lifts the skin's own hue.

        A shadow is lit by what is around (a car's teal window, the sky): its hue is that light's, not
        the skin's, and the SH light, fitted mostly to the lit skin, leaves it. Lifted to the skin's
        brightness it painted blue-grey cheeks (walter, jesse). The further a sample was lifted
        (SHADOW_LIFT), the more its chroma (log r/g, log b/g) moves to the well-seen skin's median, its
        luma kept."""
        lit = (colours * gain).clamp_min(1.0)
        lift = smoothstep(luma(gain), *SHADOW_LIFT)[..., None]  # (F, V, 1)
        chroma = log_chroma(lit)  # (F, V, 2)
        typical = seen_median(chroma, skin > 0.5)  # (F, 2)
        ratio = torch.lerp(chroma, typical[:, None].expand_as(chroma), lift).exp()  # r/g, b/g
        weights = colours.new_tensor(LUMA)
        green = luma(lit) / (weights[0] * ratio[..., 0] + weights[1] + weights[2] * ratio[..., 1])
        target = torch.stack([ratio[..., 0] * green, green, ratio[..., 1] * green], dim=-1)
        return target / lit

    def unlit(self, colours: Tensor, weight: Tensor) -> Tensor:
        """(F, V) 0..1: skin still far darker than the face's typical skin once the fitted light is
        divided out: a hard shadow (down the nose and chin of a side-lit photo, under a cap's brim)
        that nine smooth SH coefficients do not follow, so the model predicts light where the photo
        is black. The mirror point or the fill takes it. Relative to the face's own median, so a dark
        skin tone is not taken for shadow; nostrils and lash lines, as dark, fade in part."""
        bright = luma(colours)
        typical = seen_median(bright, weight > 0.5, fallback=128.0)  # (F,)
        darker = torch.log((typical[:, None] + 1) / (bright + 1))
        return smoothstep(darker, *UNLIT)

    def balance(self, colours: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
        """What the SH light leaves of a left/right difference (a shadow's hard edge, light from close
        by): (F, V, 1) gains and the (F, V) weights with deep shadows given to the mirror point.

        Where the photo shows both a point and its mirror point, their smooth brightness (a weighted
        mean over BALANCE_RINGS rings) should match, as the skin's colour is near symmetric at that
        scale: each side moves halfway to the other (within BALANCE_RANGE); a side darker than its
        mirror by more than DARKER_RAMP is shadow or an occluder, and its photo weight fades."""
        faces = len(colours)
        rows = torch.cat([luma(colours) * weight, weight], dim=0).T.contiguous()  # (V, 2F)
        for _ in range(BALANCE_RINGS):
            rows = self._spread(rows)
        smooth = (rows[:, :faces] / rows[:, faces:].clamp_min(1e-3)).T
        seen = rows[:, faces:].T
        ratio = (smooth.index_select(1, self._mirror) + 1) / (smooth + 1)  # > 1: this side is darker
        mirror_seen = smoothstep(seen.index_select(1, self._mirror), 0.05, 0.3)
        share = torch.minimum(smoothstep(seen, 0.05, 0.3), mirror_seen)
        gain = ratio.clamp(*BALANCE_RANGE).pow(share / 2)[..., None]
        return gain, weight * (1 - smoothstep(ratio, *DARKER_RAMP) * mirror_seen)

    def occluders(self, colours: Tensor, normals: Tensor, coefficients: Tensor, skin: Tensor) -> Tensor:
        """(F, V) 0..1: skin vertices that the photo shows much darker than their mirror point once the
        fitted light is divided out (one side's hair, a hand, a cast or deep shadow), or much brighter
        than the skin model and their mirror point (a highlight). Brows, lips and stubble are on both
        sides and stay; the comparison is of 2-ring means, as an occluder covers an area."""
        predicted = (sh_basis(normals) @ coefficients.transpose(1, 2)).clamp_min(0)  # (F, V, 3) linear
        linear = (colours / 255).clamp_min(0) ** GAMMA
        error = ((luma(linear) + 0.01) / (luma(predicted) + 0.01)).log()  # > 0: brighter than the model
        rows = error.T.contiguous()
        for _ in range(2):
            rows = self._spread(rows)
        error = rows.T
        known = skin.index_select(1, self._mirror) > 0.3
        darker = torch.where(known, error.index_select(1, self._mirror) - error, torch.zeros_like(error))
        occluded = torch.maximum(smoothstep(darker, *OCCLUDER), smoothstep(error, *HIGHLIGHT) * (darker < 0))
        return (occluded * self._skin).clamp(max=OCCLUDER_MAX)

    def eyes(self, filled: Tensor, colours: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
        """The eyeballs' fill: an iris of the colour the photo shows (both eyes pooled; a brown prior
        when neither shows), a dark pupil, and the fill's own sclera around them; and (F, V) 0..1 how
        much of each vertex's photo sample to keep: on the fitted iris, a sample much brighter than
        the iris is sclera or a catchlight (the photo's gaze differs from the fit's), and the iris
        colour takes its place."""
        iris_w = weight * self._iris
        # The iris is the darker part of what lands on it: the fitted iris straddles sclera and
        # catchlights, which would pale a brown iris to grey; samples brighter than the mean are left out.
        bright = luma(colours)
        mean = (bright * iris_w).sum(dim=1, keepdim=True) / iris_w.sum(dim=1, keepdim=True).clamp_min(1e-6)
        iris_w = iris_w * (bright <= mean)
        total = iris_w.sum(dim=1, keepdim=True)
        seen = (colours * iris_w[..., None]).sum(dim=1) / total.clamp_min(1e-6)
        prior = colours.new_tensor(IRIS_PRIOR).expand_as(seen)
        colour = torch.where(total > 1.0, seen, prior)  # (F, 3)
        iris = colour[:, None] * (1 - 0.8 * self._pupil[None, :, None])
        sclera = smoothstep(bright / mean.clamp_min(1.0), *IRIS_BRIGHT)
        return filled.lerp(iris, self._iris[None, :, None].expand_as(filled)), 1 - self._iris * sclera

    def bake(
        self, images: Tensor, sizes: Tensor, face_image: Tensor, verts: Tensor, landmarks: Tensor,
        lighting: str = "remove", handed: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, VertexSources]:  # fmt: skip
        """Textures (F, S, S, 3) uint8 (row 0 = top = v 1), coverage (F,): the share of the face
        tile's texels the photo shows directly (their photo weight, averaged), and the per-vertex
        sources (steps 1-4: among them the photo weights and the photo's SH lighting, lighting.py).

        images (B, 3, H, W) uint8 padded batch; sizes (B, 2) w, h; face_image (F,); verts (F, V, 3)
        image space (px, z smaller = closer); landmarks (F, N, 3) image space (the trusted region);
        ``lighting`` "remove" divides the photo's lighting out, "keep" bakes it as the photo shows it;
        ``handed`` (F, V) 0..1: how far each vertex lies under a hand, not baked (None: no hands sought).
        """
        faces, texels = len(verts), len(self._vid)
        src = self.vertex_sources(images, sizes, face_image, verts, landmarks, lighting, handed)
        weight, filled, gain = src.weight, src.filled, src.gain
        w_mirror = weight.index_select(1, self._mirror)[..., None]  # each vertex's mirror point's
        rest = 1 - weight[..., None]
        # This side's low band minus the mirror's, where this side's fill rests on photo nearby (else
        # the fill is a guess from elsewhere, and the mirror's own low band is the better one).
        near = weight.T.contiguous()
        for _ in range(SHIFT_RINGS):
            near = torch.maximum(near, self._spread(near))
        shift = (filled - filled.index_select(1, self._mirror)) * smoothstep(near.T, 0.05, 0.3)[..., None]
        # colour = w·g·photo + (1 - w)·(w_m·(g_m·mirrored + shift) + (1 - w_m)·(fill + dither))
        #        = base + dither_share·dither + mirror_gain·mirrored + own_gain·photo, per vertex:
        base = rest * (filled + w_mirror * (shift - filled))
        dither_share = rest * (1 - w_mirror)
        mirror_gain = rest * w_mirror * gain.index_select(1, self._mirror)
        own_gain = weight[..., None] * gain
        at = torch.cat([src.at, src.at.index_select(1, self._mirror)], dim=-1)  # photo and mirror point
        colour = self._texels(torch.cat([base, dither_share], dim=-1))  # (N, F, 4): the fill's part
        colour = torch.addcmul(colour[..., :3], colour[..., 3:], self._dither[:, None, None])  # (N, F, 3)
        # The photo's part only where it has one: texels with a vertex that takes the photo or its
        # mirror point in some face (the face and what the photo shows around it, a third of the
        # atlas from a frontal photo); elsewhere (scalp, neck, the inner parts) its terms are 0.
        sampled_vertex = ((weight > 0) | (w_mirror[..., 0] > 0)).any(dim=0)  # (V,)
        sampled_triangle = sampled_vertex[self._triangles].any(dim=1)  # a gather per triangle, not per texel
        photo = torch.nonzero(sampled_triangle.index_select(0, self._triangle))[:, 0]  # (M,) texel ids
        texel = self._texels(torch.cat([at, mirror_gain, own_gain], dim=-1), photo)  # (M, F, 10)
        # Both points in one grid_sample, photo and mirror point alternating along one (F, 1, 2M) row:
        # the CPU kernel vectorises along the last axis, so the texels must run along it, and the table
        # already holds each texel's two points side by side (no transpose of the points).
        grid = texel[..., :4].transpose(0, 1).reshape(faces, 1, 2 * len(photo), 2)
        sampled = F.grid_sample(src.window, grid, align_corners=False, padding_mode="border")  # (F, 3, 1, 2M)
        # The blend runs channel-major, as the samples come: the table's gains are read in place through
        # a strided view, and index_add_ takes the three-value result as it is (half the bytes the
        # samples' transpose to texel-major moved, and the same sums: about 7 ms less per 1024² bake).
        gains = texel.permute(1, 2, 0)  # (F, 10, M) view; part below: (F, 3, M)
        own, mirrored = sampled[:, :, 0, 0::2], sampled[:, :, 0, 1::2]  # (F, 3, M) each
        part = torch.mul(gains[:, 4:7], mirrored).addcmul_(gains[:, 7:10], own)
        colour.index_add_(0, photo, part.permute(2, 0, 1))
        coverage = weight @ self._tile_share
        # Texels -> the S x S image (each atlas texel copies its nearest head texel): RGB packed into
        # one int32 per texel, so the gather moves whole texels instead of single bytes.
        rgba = torch.empty((faces, texels, 4), dtype=torch.uint8, device=colour.device)
        rgba[..., :3] = colour.clamp_(0, 255).add_(0.5).transpose(0, 1)
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
        return atlas.permute(0, 2, 3, 1), coverage, src


def unnatural_hue(colours: Tensor) -> Tensor:
    """(F, V) 0..1 how far a colour lies beyond neutral grey towards blue (log b/g) or green and teal
    (log r/g below 0), measured on the photo's own colours: skin and hair of every shade, grey and
    white hair included, sit on the warm side of grey; a car's teal, the sky or a blue shirt do not."""
    red_green, blue_green = log_chroma(colours).unbind(-1)
    return smoothstep(blue_green.clamp_min(0) + (-red_green).clamp_min(0), *UNNATURAL)


def _iris_maps(topology: HeadTopology, parts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(V,) float32 iris and pupil shares of the eyeball vertices (0 elsewhere), from each vertex's
    direction off its eyeball's forward axis (+z) on the neutral head's eyeballs."""
    from face3d.models.backends.ict.model import load_ict_model

    neutral = load_ict_model().neutral
    iris, pupil = np.zeros(len(parts), np.float32), np.zeros(len(parts), np.float32)
    for name in ("eyeball_left", "eyeball_right"):
        ids = np.array([k for k, p in enumerate(parts) if p == name])
        if not len(ids):
            continue
        points = neutral[ids]
        centre = (points.min(axis=0) + points.max(axis=0)) / 2
        centre[2] = points[:, 2].min() + (points[:, 0].max() - points[:, 0].min()) / 2  # a sphere's centre
        direction = points - centre
        cosine = direction[:, 2] / np.maximum(np.linalg.norm(direction, axis=1), 1e-6)
        for out, (lo, hi) in zip((iris, pupil), IRIS, strict=True):
            out[ids] = smoothstep(torch.from_numpy(cosine), lo, hi).numpy()
    return iris, pupil


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
