"""Generate models/data/topology.npz: triangles, UV layout, left/right mirror map and template mesh.

Run ``python scripts/make_topology.py`` (weights pulled, test photos reachable). The output is
deterministic, committed, and read by ``models.topology``. Landmarks come from our torch rebuild
of the net (``models.tflite``); ``--backend litert`` runs the reference TFLite interpreter instead
as a cross-check (the two templates agree within 0.002 cm).

Why generated here rather than copied: the only pinned geometry we may ship is MediaPipe's
468-point tesselation *edge set*; triangles, winding, the template shape, symmetry and the UV
layout are all derived from it and from our own landmark-net output on real frontal photos.

Steps:
1. Triangles = 3-cliques of the edge graph that are real faces (a clique whose three edges are
   each already shared by two other cliques spans a hole, not a face), checked to be a manifold.
2. Template = landmark net on frontal photos, moved to the model frame (x, -y, -z), averaged
   after a similarity alignment, symmetrised with the mirror map, scaled to 6.3 cm between eyes.
3. Mirror map = optimal assignment of each point to the reflection of another across the fitted
   symmetry plane; must be an involution and map the edge graph onto itself except for the few
   quads whose diagonal MediaPipe chose differently on the two sides.
4. Winding = propagated across shared edges, then flipped so normals point out of the face (+Z).
5. UV = Floater mean-value (Tutte-style) embedding with the outer boundary pinned to a convex
   superellipse; holes (eyes, mouth) are closed by a virtual centre vertex during the solve only.
   A convex boundary and positive weights guarantee no flipped triangles; exact left/right
   symmetry is then enforced and every invariant re-checked.

Steps 1, 4 and 5 (mesh-only, no net or photos) live in scripts/topology_mesh.py; this script reads
the edge set, builds the template and mirror map (steps 2-3) and writes the result.
"""

from __future__ import annotations

import argparse
import ast
import sys
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy.optimize import linear_sum_assignment

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from face3d.models.backends.facemesh.topology import TOPOLOGY_FILE  # noqa: E402
from face3d.models.nets.assets import asset_path  # noqa: E402
from face3d.service.config import default_cache_dir  # noqa: E402
from scripts.photos import photo  # noqa: E402
from scripts.topology_mesh import (  # noqa: E402
    N_POINTS,
    check,
    find_triangles,
    layout_uv,
    orient_outward,
    wind_consistently,
)

EYE_DISTANCE_CM = 6.3
FRONTAL_PHOTOS = ("astronaut", "face_001", "image00021")
# Rough square face boxes (centre x, centre y, side) in each photo's pixels; refined from landmarks.
INITIAL_BOXES = {"astronaut": (224, 135, 140), "face_001": (410, 285, 380), "image00021": (225, 235, 190)}
LANDMARK_INPUT = 192
ROI_SCALE = 1.5  # MediaPipe's margin around the landmark extent for the landmark-net crop


def read_connections() -> dict[str, list[tuple[int, int]]]:
    """Edge sets of the pinned face_mesh_connections.py, read with ast (mediapipe is never imported)."""
    tree = ast.parse(asset_path("face_mesh_connections.py", default_cache_dir()).read_text())
    sets: dict[str, list[tuple[int, int]]] = {}
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)):
            continue
        args = node.value.args
        if args and isinstance(args[0], ast.List):
            name = node.targets[0].id  # type: ignore[attr-defined]
            sets[name] = [tuple(ast.literal_eval(e)) for e in args[0].elts]  # type: ignore[misc]
    return sets


@cache
def _litert_interpreter() -> Any:  # ai_edge_litert is a test-only dependency: imported lazily
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(str(asset_path("face_landmark.tflite", default_cache_dir())))
    interp.allocate_tensors()
    return interp


def landmarks_litert(crop: np.ndarray) -> np.ndarray:
    """(468, 3) landmarks in 192-px crop coordinates from the reference TFLite interpreter."""
    interp = _litert_interpreter()
    interp.set_tensor(interp.get_input_details()[0]["index"], crop[None].astype(np.float32) / 255.0)
    interp.invoke()
    out = interp.get_tensor(interp.get_output_details()[0]["index"])
    return out.reshape(N_POINTS, 3)


@cache
def _torch_net() -> torch.nn.Module:
    from face3d.models.nets.tflite.loader import load_tflite

    return load_tflite(asset_path("face_landmark.tflite", default_cache_dir())).eval()


def landmarks_torch(crop: np.ndarray) -> np.ndarray:
    """(468, 3) landmarks in 192-px crop coordinates from our own torch rebuild of the net."""
    x = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255.0
    with torch.no_grad():
        out = _torch_net()(x)[0]
    return out.reshape(N_POINTS, 3).numpy()


def photo_landmarks(name: str, backend: str, iterations: int = 4) -> np.ndarray:
    """(468, 3) image-space landmarks: crop, run the net, re-centre the crop on the result, repeat."""
    image = Image.fromarray(photo(name))
    run = landmarks_torch if backend == "torch" else landmarks_litert
    cx, cy, side = INITIAL_BOXES[name]
    for _ in range(iterations):
        x0, y0 = cx - side / 2, cy - side / 2
        crop = image.transform(
            (LANDMARK_INPUT, LANDMARK_INPUT),
            Image.Transform.AFFINE,
            (side / LANDMARK_INPUT, 0, x0, 0, side / LANDMARK_INPUT, y0),
            resample=Image.Resampling.BILINEAR,
        )
        pts = run(np.array(crop)).astype(np.float64) * (side / LANDMARK_INPUT)
        pts[:, 0] += x0
        pts[:, 1] += y0
        lo, hi = pts[:, :2].min(0), pts[:, :2].max(0)
        cx, cy = (lo + hi) / 2
        side = float((hi - lo).max() * ROI_SCALE)
    return pts


def similarity_align(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """src moved onto dst by the least-squares similarity transform (Umeyama)."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    u, d, vt = np.linalg.svd(b.T @ a)
    s = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ s @ vt
    scale = (d * np.diag(s)).sum() / (a**2).sum()
    return scale * a @ rot.T + md


def fit_mirror(points: np.ndarray, edges: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Mirror map and the points rotated so that the symmetry plane is x = 0.

    Alternates between matching each point to the nearest reflection of another (assignment on a
    symmetric cost, so the answer is an involution when the geometry is near-symmetric) and
    refitting the plane from the matched pairs.
    """
    pts = points - points.mean(0)
    normal = np.array([1.0, 0.0, 0.0])
    offset = 0.0
    for _ in range(5):
        refl = pts - 2 * (pts @ normal - offset)[:, None] * normal
        cost = ((pts[:, None, :] - refl[None, :, :]) ** 2).sum(-1)
        _, mirror = linear_sum_assignment(cost)
        diffs = pts - pts[mirror]
        axes = np.linalg.eigh(diffs.T @ diffs)[1]
        normal = axes[:, -1] * np.sign(axes[0, -1])
        offset = float(((pts + pts[mirror]) / 2 @ normal).mean())
    assert (mirror[mirror] == np.arange(len(pts))).all(), "mirror map is not an involution"
    edge_set = {frozenset(e) for e in edges}
    unmatched = {frozenset((mirror[a], mirror[b])) for a, b in edges} - edge_set
    # The tesselation is symmetric except for a few quads whose diagonal was chosen differently on
    # the two sides; more than that means the matching (or the landmarks) went wrong.
    assert len(unmatched) <= 0.01 * len(edge_set), f"mirror breaks {len(unmatched)} edges"
    midline = int((mirror == np.arange(len(pts))).sum())
    print(f"mirror map: {midline} midline points, {len(unmatched)} asymmetric edges")
    # Rotate the fitted plane normal onto +X (smallest rotation), then put the plane at x = 0.
    x = np.array([1.0, 0.0, 0.0])
    axis = np.cross(normal, x)
    sin, cos = np.linalg.norm(axis), float(normal @ x)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]]) / max(sin, 1e-12)
    rot = np.eye(3) + sin * k + (1 - cos) * k @ k
    aligned = (pts - offset * normal) @ rot.T
    return mirror.astype(np.int64), aligned


def eye_centres(points: np.ndarray, sets: dict[str, list[tuple[int, int]]]) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the two eye contours (MediaPipe's LEFT_EYE / RIGHT_EYE edge sets)."""
    left = sorted({i for e in sets["FACEMESH_LEFT_EYE"] for i in e})
    right = sorted({i for e in sets["FACEMESH_RIGHT_EYE"] for i in e})
    return points[left].mean(0), points[right].mean(0)


def build_template(sets: dict[str, list[tuple[int, int]]], backend: str) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric template (cm, model frame) and mirror map from frontal photos."""
    flip = np.array([1.0, -1.0, -1.0])  # image (x right, y down, z away) -> model (+Y up, +Z out)
    shapes = [photo_landmarks(name, backend) * flip for name in FRONTAL_PHOTOS]
    ref = shapes[0] - shapes[0].mean(0)
    mean = np.mean([similarity_align(s, ref) for s in shapes], axis=0)
    mirror, aligned = fit_mirror(mean, sets["FACEMESH_TESSELATION"])
    sym = (aligned + aligned[mirror] * np.array([-1.0, 1.0, 1.0])) / 2
    sym[mirror == np.arange(N_POINTS), 0] = 0.0
    left, right = eye_centres(sym, sets)
    assert left[0] > right[0], "subject's left eye must be at +X (viewer's right)"
    sym = sym * (EYE_DISTANCE_CM / np.linalg.norm(left - right))
    sym -= np.array([0.0, *sym[:, 1:].mean(0)])
    return sym, mirror


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("torch", "litert"), default="torch")
    parser.add_argument("--out", type=Path, default=TOPOLOGY_FILE)
    args = parser.parse_args()
    sets = read_connections()
    tris = wind_consistently(find_triangles(sets["FACEMESH_TESSELATION"]))
    template, mirror = build_template(sets, args.backend)
    tris = orient_outward(tris, template)
    uvs = layout_uv(tris, template, mirror).astype(np.float32)
    fill = check(tris, uvs, mirror)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out, triangles=tris, uvs=uvs, mirror=mirror, template=template.astype(np.float32)
    )
    print(f"wrote {args.out}: {len(tris)} triangles, atlas fill ratio at 2048 = {fill:.4f}")


if __name__ == "__main__":
    main()
