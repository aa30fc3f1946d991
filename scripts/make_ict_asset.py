"""Generate models/data/ict_head.npz (+ ICT-FaceKit-LICENSE.txt) from the ICT Face Model Light.

Run ``python scripts/make_ict_asset.py [SRC]`` with SRC the converted ICT-FaceKit folder (default
``../shared/ict-facekit`` beside the repository). The output is committed and read by
``face3d.models.backends.ict.model.load_ict_model``; the runtime never reads SRC.

What is kept: ICT's parts #0-#8 -- face, head and neck, mouth socket, both eye sockets, gums and
tongue, teeth, both eyeballs (sclera + iris) -- which are exactly the first 24,591 vertices, 24,692
polygons and 26,783 UVs of the source, so indices need no remapping. Dropped: lacrimal fluid, eye
blend, eye occlusion and eyelash strips (Unreal-style overlay meshes that need special alpha shaders
and add nothing to a baked photo texture).

Storage (why): the 153 shape modes dominate the size. float16 spends its bits on relative precision
of tiny values and compresses poorly (7.2 MB for face + head alone); a fixed-point grid wastes
nothing where the deltas are small, so the deltas are int16 multiples of ``delta_step_cm`` =
0.001 cm (0.01 mm, max rounding error 0.005 mm per mode value), laid out (mode, axis, vertex) so
that each mode's smooth field sits contiguously for the compressor. Quads are split along their
shorter diagonal on the neutral head. Everything else is stored exactly.

Byte-for-byte reproducible: members are written in a fixed order into a zip with a fixed timestamp
and permissions (``np.savez_compressed`` stamps the current time), LZMA-compressed (np.load reads any
zip method). ``--check`` rebuilds in memory and compares with the committed file.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "models" / "data"
DEFAULT_SRC = ROOT.parent / "shared" / "ict-facekit"
OUT_FILE = DATA / "ict_head.npz"
LICENSE_FILE = DATA / "ICT-FaceKit-LICENSE.txt"
SOURCE = "ICT-VGL/ICT-FaceKit@da5f95a607f5e6b37755b38d3385d7f2853732e5 (ICT Face Model Light)"
SOURCE_SHA256 = "951ffde2dca174b4de365f5ff959a90a6b1985c1eff7b9056eabaa66e20729b7"
DELTA_STEP_CM = 0.001
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)  # the zip format's earliest date

# ICT-README "Face Model Topology": (name, first vertex, first polygon) of the kept parts #0-#8.
PARTS = (
    ("face", 0, 0),
    ("head_neck", 9409, 9230),
    ("mouth_socket", 11248, 11144),
    ("eye_socket_left", 13294, 13226),
    ("eye_socket_right", 13678, 13630),
    ("gums_tongue", 14062, 14034),
    ("teeth", 17039, 17006),
    ("eyeball_left", 21451, 21496),
    ("eyeball_right", 23021, 23094),
)
N_VERTICES = 24591  # parts #0-#8; #9 (lacrimal fluid left) starts here
N_POLYGONS = 24692
NARROW_FACE_VERTICES = 6706  # ICT "Narrow face area [0:6705]": the fitting region of the face
# ICT-README "Multi-PIE 68 point facial landmarks indices" (same list as vertex_indices.json).
LANDMARKS_68 = (
    1225, 1888, 1052, 367, 1719, 1722, 2199, 1447, 966, 3661, 4390, 3927, 3924, 2608, 3272, 4088, 3443,
    268, 493, 1914, 2044, 1401, 3615, 4240, 4114, 2734, 2509, 978, 4527, 4942, 4857, 1140, 2075, 1147,
    4269, 3360, 1507, 1542, 1537, 1528, 1518, 1511, 3742, 3751, 3756, 3721, 3725, 3732, 5708, 5695,
    2081, 0, 4275, 6200, 6213, 6346, 6461, 5518, 5957, 5841, 5702, 5711, 5533, 6216, 6207, 6470, 5517,
    5966,
)  # fmt: skip


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def triangulate(polys: np.ndarray, uv_polys: np.ndarray, verts: np.ndarray) -> tuple[np.ndarray, ...]:
    """Quads -> two triangles along the shorter diagonal (on ``verts``); -1-padded triangles pass.

    Returns (triangles, triangle_uvs, source polygon of each triangle); the winding of the source
    polygon is kept (ICT's faces are counter-clockwise seen from outside).
    """
    quad = polys[:, 3] >= 0
    a, b, c, d = (verts[polys[:, k]] for k in range(4))
    ac_shorter = np.linalg.norm(a - c, axis=1) <= np.linalg.norm(b - d, axis=1)
    split_ac = [[0, 1, 2], [0, 2, 3]]
    split_bd = [[0, 1, 3], [1, 2, 3]]
    tris, uvs, src = [], [], []
    for i in range(len(polys)):  # ~25k polygons, once, in a generator script: clarity over speed
        corners = split_ac if ac_shorter[i] else split_bd
        if not quad[i]:
            corners = [[0, 1, 2]]
        for k in corners:
            tris.append(polys[i, k])
            uvs.append(uv_polys[i, k])
            src.append(i)
    return np.asarray(tris, np.int32), np.asarray(uvs, np.int32), np.asarray(src, np.int64)


def quantize(deltas: np.ndarray) -> np.ndarray:
    """(M, V, 3) cm -> (M, 3, V) int16 multiples of DELTA_STEP_CM (checked not to overflow)."""
    q = np.round(deltas.astype(np.float64) / DELTA_STEP_CM)
    assert np.abs(q).max() < 32767, "delta exceeds the int16 range"
    return np.ascontiguousarray(q.astype(np.int16).transpose(0, 2, 1))


def build(src: Path) -> dict[str, np.ndarray]:
    """All arrays of the asset, in the order they are written."""
    if sha256(src / "ict_face_model_light.npz") != SOURCE_SHA256:
        raise SystemExit(f"{src}/ict_face_model_light.npz does not match the pinned sha256")
    with np.load(src / "ict_face_model_light.npz") as ict:
        neutral = ict["neutral"][:N_VERTICES].astype(np.float32)
        identity = ict["identity_deltas"][:, :N_VERTICES]
        expression = ict["expression_deltas"][:, :N_VERTICES]
        polys = ict["face_vertices"][:N_POLYGONS]
        uv_polys = ict["face_uvs"][:N_POLYGONS]
        poly_material = ict["face_material"][:N_POLYGONS]
        material_names = ict["material_names"]
        uv_all = ict["uv"]
        expression_names = ict["expression_names"]
    assert polys.max() < N_VERTICES and (polys[:, :3] >= 0).all()
    used_mats = np.unique(poly_material)
    triangles, triangle_uvs, src_poly = triangulate(polys, uv_polys, neutral)
    n_uv = int(triangle_uvs.max()) + 1
    assert n_uv == 26783, n_uv
    vertex_part = np.zeros(N_VERTICES, np.int8)
    for k, (_, first_vertex, _) in enumerate(PARTS):
        vertex_part[first_vertex:] = k
    material_map = np.full(len(material_names), -1, np.int64)
    material_map[used_mats] = np.arange(len(used_mats))
    return {
        "neutral": neutral,
        "delta_step_cm": np.float32(DELTA_STEP_CM),
        "identity_q": quantize(identity),
        "expression_q": quantize(expression),
        "expression_names": expression_names.astype("<U16"),
        "triangles": triangles,
        "triangle_uvs": triangle_uvs,
        "uvs": uv_all[:n_uv].astype(np.float32),
        "triangle_material": material_map[poly_material[src_poly]].astype(np.int8),
        "material_names": material_names[used_mats].astype("<U16"),
        "vertex_part": vertex_part,
        "part_names": np.array([p[0] for p in PARTS], "<U16"),
        "narrow_face_vertices": np.int32(NARROW_FACE_VERTICES),
        "landmarks68": np.asarray(LANDMARKS_68, np.int32),
        "source": np.array(SOURCE),
    }


def zip_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz (zip of .npy members) with fixed member order, timestamps and permissions."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_DATE_TIME)
            info.compress_type = zipfile.ZIP_LZMA
            info.external_attr = 0o644 << 16
            info.create_system = 3
            zf.writestr(info, buf.getvalue())
    return out.getvalue()


def license_text(src: Path) -> str:
    """The MIT notice that must travel with the derived asset, plus ICT's credits."""
    return (
        "models/data/ict_head.npz is derived from the ICT Face Model Light\n"
        f"({SOURCE}, https://github.com/ICT-VGL/ICT-FaceKit):\n"
        "a subset of its parts, with its shape deltas stored as int16 multiples of 0.01 mm\n"
        "and its quads split into triangles. The model's licence and credits follow.\n\n"
        + (src / "LICENSE").read_text().strip()
        + "\n\n"
        + (src / "CREDITS.md").read_text().strip()
        + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", nargs="?", type=Path, default=DEFAULT_SRC, help="ICT-FaceKit folder")
    parser.add_argument("--check", action="store_true", help="rebuild in memory, compare, write nothing")
    args = parser.parse_args()
    data = zip_bytes(build(args.src))
    notice = license_text(args.src)
    if args.check:
        same = OUT_FILE.read_bytes() == data and LICENSE_FILE.read_text() == notice
        print("identical" if same else "DIFFERENT")
        sys.exit(0 if same else 1)
    OUT_FILE.write_bytes(data)
    LICENSE_FILE.write_text(notice)
    print(f"wrote {OUT_FILE.relative_to(ROOT)}: {len(data) / 1e6:.2f} MB; {LICENSE_FILE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
