"""Silhouette correspondences of the ICT head for a face's outline (3DMM "landmark marching").

Why: the outline points a landmark net or an annotator gives (MediaPipe's face oval, iBUG's jaw
0-16) lie on the face's visible silhouette. On a frontal face that is a fixed place on the cheek and
jaw, but as the head turns, the silhouette of the side turning away moves across the cheek towards
the nose, and the fixed surface point goes behind the face. So each outline point gets a "contour
line": candidate surface points at its height on the neutral head, from the point itself inward to
``INNER_CM`` off the midline (about the nose's half-width: further in, the nose would be the outline),
one vertex per ``STEP_CM`` of x. At a pose, the candidate furthest out in the image along the head's
outward lateral axis is the one on the silhouette. Candidate 0 is the fixed point itself and every
other candidate lies inward of it, so a frontal side, or the side turned towards the camera, keeps
its fixed point: only the side that turns away marches. Lines are built once per process from the
neutral head (vertex ids stay valid for every identity and expression; positions follow the shape).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from face3d.models.backends.ict.model import IctModel

BAND_CM = 0.4  # half-height of a line's band of vertices on the neutral head
STEP_CM = 0.25  # one candidate per this much x along a line
INNER_CM = 2.0  # lines stop this far off the midline
MIN_OFFSET_CM = 2.5  # outline points nearer the midline than this (the chin, the forehead's top) stay fixed
MARGIN_CM = 0.1  # a candidate must lie this much further out than the fixed point to replace it


@dataclass(frozen=True)
class ContourLines:
    """P outline points with K candidate surface points each (padded), numpy."""

    vertices: np.ndarray  # (P, K, 3) int64 vertex ids whose barycentric blend is a candidate
    barycentric: np.ndarray  # (P, K, 3) float64; candidate 0 is the outline point itself
    valid: np.ndarray  # (P, K) bool: False on padding
    side: np.ndarray  # (P,) float64 +1 on the subject's left (+X), -1 on the right: the outward direction


def contour_lines(model: IctModel, vertices: np.ndarray, barycentric: np.ndarray) -> ContourLines:
    """Lines for outline points given as barycentric blends (P, 3) of vertex ids (P, 3).

    Candidates are ``face`` vertices of the narrow face area in a band of ``BAND_CM`` around the
    point's height on the neutral head, on its side, from ``INNER_CM`` off the midline out to the
    point; per ``STEP_CM`` bin of x the vertex nearest the point's height is kept.
    """
    neutral = model.neutral.astype(np.float64)
    points = np.einsum("pk,pkc->pc", barycentric, neutral[vertices])
    face = np.flatnonzero(model.vertex_part[: model.narrow_face_vertices] == model.part_names.index("face"))
    lines: list[list[int]] = []
    for x0, y0, _ in points:
        if abs(x0) < MIN_OFFSET_CM:
            lines.append([])
            continue
        x, y = neutral[face, 0] * np.sign(x0), neutral[face, 1]
        near = face[(np.abs(y - y0) < BAND_CM) & (x >= INNER_CM) & (x < abs(x0))]
        bins = np.floor(np.abs(neutral[near, 0]) / STEP_CM).astype(np.int64)
        order = np.lexsort((np.abs(neutral[near, 1] - y0), bins))  # by bin, then nearest the height
        first = np.diff(bins[order], prepend=-1) != 0
        lines.append(near[order][first].tolist())
    k = 1 + max(map(len, lines))
    ids = np.repeat(vertices[:, None, :], k, axis=1).copy()
    bary = np.repeat(barycentric[:, None, :].astype(np.float64), k, axis=1).copy()
    valid = np.zeros((len(points), k), dtype=bool)
    valid[:, 0] = True
    for p, line in enumerate(lines):
        ids[p, 1 : 1 + len(line)] = np.asarray(line, dtype=np.int64)[:, None]
        bary[p, 1 : 1 + len(line)] = (1.0, 0.0, 0.0)
        valid[p, 1 : 1 + len(line)] = True
    return ContourLines(ids, bary, valid, np.sign(points[:, 0]))


class Silhouette:
    """Contour lines as tensors on one device: candidate positions for coefficients, and the pick.

    The candidates' positions are linear in the coefficients (``mean + θ B``, like the fit's
    landmarks), so marching costs one (F, C) x (C, P*K*3) product per fit iteration.
    """

    def __init__(self, model: IctModel, lines: ContourLines, device: torch.device | str, dtype: torch.dtype):
        ids = lines.vertices
        basis = np.concatenate([model.identity[:, ids], model.expression[:, ids]])  # (C, P, K, 3, 3)
        mean = np.einsum("pkj,pkjc->pkc", lines.barycentric, model.neutral[ids].astype(np.float64))
        cand_basis = np.einsum("pkj,mpkjc->mpkc", lines.barycentric, basis)
        self.shape = lines.valid.shape
        self.mean = torch.tensor(mean.reshape(1, -1), dtype=dtype, device=device)  # (1, P*K*3)
        self.basis = torch.tensor(cand_basis.reshape(len(basis), -1), dtype=dtype, device=device)
        self.invalid = torch.tensor(~lines.valid, device=device)
        self.side = torch.tensor(lines.side, dtype=dtype, device=device)

    def candidates(self, theta: Tensor) -> Tensor:
        """(F, P, K, 3) model-space candidate positions for coefficients θ (F, C)."""
        return (self.mean + theta.to(self.basis) @ self.basis).view(len(theta), *self.shape, 3)

    def pick(self, candidates: Tensor, rotation: Tensor) -> Tensor:
        """(F, P, 3) the silhouette point of each line at rotations (F, 3, 3) (model -> camera frame).

        Scored along the image-plane direction of the head's outward axis (±X model, rotated): the
        candidate furthest out is on the outline (scale and translation move every candidate alike).
        Why the margin and the height: near frontal, or for an identity whose cheek bulges a little,
        a candidate can beat the fixed point by a hair; and candidates sit up to ``BAND_CM`` above
        or below the line. The pick keeps the fixed point's model-space height, so the point moves
        across the face, not up and down it.
        """
        axis = rotation[:, :2, 0, None]  # (F, 2, 1): the image-plane direction of model +X
        outward = axis / axis.norm(dim=1, keepdim=True).clamp_min(1e-6) * self.side  # (F, 2, P), unit
        xy = torch.einsum("fij,fpkj->fpki", rotation[:, :2], candidates)  # rotated, image-plane part
        score = (xy * outward.transpose(1, 2)[:, :, None, :]).sum(-1).masked_fill(self.invalid, -torch.inf)
        score[:, :, 0] += MARGIN_CM  # the fixed point unless the outline is clearly (cm) elsewhere
        index = score.argmax(dim=2)  # (F, P)
        picked = torch.gather(candidates, 2, index[:, :, None, None].expand(-1, -1, 1, 3))[:, :, 0]
        return torch.stack([picked[..., 0], candidates[:, :, 0, 1], picked[..., 2]], dim=-1)
