"""Registration of MediaPipe's canonical face onto the ICT head: steps 2-5 of
scripts/make_ict_correspondence.py (similarity alignment, non-rigid fit, closest-point
correspondence, iris locations).

It exists apart from the entry script because it is the numerical core: it needs only the
canonical points and an ``IctModel``, not the Face Landmarker bundle, its download or the protobuf
reader, and it is where the fit's tuning constants live. The entry script reads the canonical
face, calls ``register`` and ``iris_locations``, and writes the correspondence.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import lsq_linear
from scipy.spatial import cKDTree

from face3d.models.backends.ict.model import IctModel
from face3d.models.geometry.ibug68 import IBUG68_INDEX

IBUG_USED = np.arange(17, 68)  # brows, nose, eyes, mouth
LANDMARK_WEIGHT = 3.0  # a landmark pair counts as this many closest-point pairs
IDENTITY_PRIOR = 0.02  # cm^2: variance of the canonical points around the fitted ICT surface
ITERATIONS = 12
IRIS_RADIUS_CM = 0.585
LIP_SPLIT_CM = 1.0
# MediaPipe's inner-lip contours (FACEMESH_LIPS) without the corners.
UPPER_INNER_LIP = (191, 80, 81, 82, 13, 312, 311, 310, 415)
LOWER_INNER_LIP = (95, 88, 178, 87, 14, 317, 402, 318, 324)


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity (s, R, t) with dst ≈ s R src + t."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    u, d, vt = np.linalg.svd(b.T @ a)
    flip = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ flip @ vt
    scale = float((d * np.diag(flip)).sum() / (a**2).sum())
    return scale, rot, md - scale * rot @ ms


def closest_on_triangles(
    points: np.ndarray, verts: np.ndarray, tris: np.ndarray, k: int = 48
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closest surface point of each point among ``tris``: (triangle row, barycentric (P,3), distance).

    Exact over the k triangles with the nearest centroids (the head's triangles are ~2 mm, the
    distances here are a few mm, so the true closest triangle is always among them).
    """
    a, b, c = (verts[tris[:, i]] for i in range(3))
    _, cand = cKDTree((a + b + c) / 3).query(points, k=min(k, len(tris)))
    p = points[:, None, :]
    a, b, c = a[cand], b[cand], c[cand]
    options_q, options_w = [], []
    # Projection onto the plane, valid when inside.
    ab, ac, ap = b - a, c - a, p - a
    d00, d01, d11 = (ab * ab).sum(-1), (ab * ac).sum(-1), (ac * ac).sum(-1)
    d20, d21 = (ap * ab).sum(-1), (ap * ac).sum(-1)
    den = d00 * d11 - d01 * d01
    v = (d11 * d20 - d01 * d21) / den
    w = (d00 * d21 - d01 * d20) / den
    bary = np.stack([1 - v - w, v, w], -1)
    inside = (bary >= 0).all(-1)
    options_q.append(np.where(inside[..., None], a + v[..., None] * ab + w[..., None] * ac, np.inf))
    options_w.append(bary)
    # The three edges.
    for i, j, e0, e1 in ((0, 1, a, b), (1, 2, b, c), (2, 0, c, a)):
        t = np.clip(((p - e0) * (e1 - e0)).sum(-1) / ((e1 - e0) ** 2).sum(-1), 0.0, 1.0)
        options_q.append(e0 + t[..., None] * (e1 - e0))
        wt = np.zeros((*t.shape, 3))
        wt[..., i], wt[..., j] = 1 - t, t
        options_w.append(wt)
    q = np.stack(options_q)  # (5, P, k, 3)
    dist = np.linalg.norm(q - p[None], axis=-1)
    dist = np.nan_to_num(dist, nan=np.inf)
    flat = dist.transpose(1, 0, 2).reshape(len(points), -1)  # (P, 5k)
    best = flat.argmin(1)
    opt, col = np.divmod(best, cand.shape[1])
    rows = np.arange(len(points))
    return cand[rows, col], np.stack(options_w)[opt, rows, col], flat[rows, best]


def shape_matrix(model: IctModel) -> tuple[np.ndarray, np.ndarray]:
    """Neutral (V,3) and the (V,3,153) linear map from [identity; expression] to vertex offsets."""
    basis = np.concatenate([model.identity, model.expression]).transpose(1, 2, 0)
    return model.neutral.astype(np.float64), basis.astype(np.float64)


def lip_groups(model: IctModel, tris: np.ndarray) -> dict[str, np.ndarray]:
    """Face-triangle masks for the two lips: the lower lip drops >= 1 cm under jawOpen (its centre
    3.5 cm), the upper one less (its centre 0.24 cm); the corners lie in between."""
    jaw = model.expression[model.expression_names.index("jawOpen")]
    drop = -jaw[tris][..., 1].mean(1)
    return {"upper": drop < LIP_SPLIT_CM, "lower": drop >= LIP_SPLIT_CM}


def register(canon: np.ndarray, model: IctModel) -> dict[str, np.ndarray]:
    """Steps 2-4 of make_ict_correspondence.py: fitted coefficients, correspondence and residuals."""
    neutral, basis = shape_matrix(model)
    face_ids = np.flatnonzero(model.vertex_part[model.triangles].max(1) == 0)
    face_tris = model.triangles[face_ids]
    lips = lip_groups(model, face_tris)
    group = np.zeros(len(canon), np.int64)  # 0: any face triangle, 1: upper lip, 2: lower lip
    group[list(UPPER_INNER_LIP)], group[list(LOWER_INNER_LIP)] = 1, 2
    allowed = (np.ones(len(face_tris), bool), lips["upper"], lips["lower"])
    lm_ict = model.landmarks68[IBUG_USED]
    lm_mp = IBUG68_INDEX[IBUG_USED]
    scale, rot, trans = umeyama(canon[lm_mp], neutral[lm_ict])
    n_id, n_ex = model.identity.shape[0], model.expression.shape[0]
    n_coef = n_id + n_ex
    coef = np.zeros(n_coef)
    prior = np.zeros((n_id, n_coef))
    prior[:, :n_id] = np.eye(n_id) * np.sqrt(IDENTITY_PRIOR)
    bounds = (np.r_[np.full(n_id, -np.inf), np.zeros(n_ex)], np.r_[np.full(n_id, np.inf), np.ones(n_ex)])
    for it in range(ITERATIONS + 1):
        aligned = scale * canon @ rot.T + trans
        verts = neutral + basis @ coef
        row = np.zeros(len(canon), np.int64)
        bary = np.zeros((len(canon), 3))
        dist = np.zeros(len(canon))
        for g, mask in enumerate(allowed):
            sel = group == g
            rows = np.flatnonzero(mask)
            t, bary[sel], dist[sel] = closest_on_triangles(aligned[sel], verts, face_tris[rows])
            row[sel] = rows[t]
        print(f"iteration {it}: residual median {np.median(dist) * 10:.2f} mm, max {dist.max() * 10:.2f} mm")
        if it == ITERATIONS:
            break
        corners = face_tris[row]  # (P, 3) vertex ids
        surf0 = np.einsum("pk,pkc->pc", bary, neutral[corners])
        surf_basis = np.einsum("pk,pkcm->pcm", bary, basis[corners])
        w = np.sqrt(LANDMARK_WEIGHT)
        a_mat = np.concatenate([surf_basis.reshape(-1, n_coef), w * basis[lm_ict].reshape(-1, n_coef), prior])
        y = np.concatenate(
            [(aligned - surf0).ravel(), w * (aligned[lm_mp] - neutral[lm_ict]).ravel(), np.zeros(n_id)]
        )
        coef = lsq_linear(a_mat, y, bounds=bounds, method="bvls").x
        verts = neutral + basis @ coef
        targets = np.concatenate([np.einsum("pk,pkc->pc", bary, verts[corners]), verts[lm_ict]])
        scale, rot, trans = umeyama(np.concatenate([canon, canon[lm_mp]]), targets)
    return {"coef": coef, "triangle": face_ids[row], "bary": bary, "dist": dist, "aligned": aligned}


def iris_locations(model: IctModel, verts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Step 5: (10,) triangles and (10,3) barycentrics for MediaPipe points 468-477."""
    tri_out, bary_out = [], []
    for material in ("M_IrisRight", "M_IrisLeft"):  # 468-472: subject's right eye, 473-477: left
        ids = np.flatnonzero(model.triangle_material == model.material_names.index(material))
        tris = model.triangles[ids]
        ring = np.unique(tris)
        apex = verts[ring[verts[ring, 2].argmax()]]  # ICT's eyes look along +Z: the pupil centre
        offsets = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0]]) * IRIS_RADIUS_CM
        t, b, _ = closest_on_triangles(apex + offsets, verts, tris)
        tri_out.append(ids[t])
        bary_out.append(b)
    return np.concatenate(tri_out), np.concatenate(bary_out)


def surface_points(model: IctModel, verts: np.ndarray, tri: np.ndarray, bary: np.ndarray) -> np.ndarray:
    return np.einsum("pk,pkc->pc", bary, verts[model.triangles[tri]])
