"""Why face3d writes GLBs with its own small writer: the same head GLB through models/export/glb.py and
through pygltflib's object model, timed side by side in one process, with the files checked equal.

The pygltflib path builds the whole document per file, as a generic writer must (accessors, buffer
views, the morph targets' sparse accessors, the binary blob); ours builds a layout's static parts
once per process and formats only what the face changes. Both files are decoded and compared
(positions, normals, UVs, indices, morph targets, texture), so the race is between equal outputs.

    python -m bench.glb_writers                       # ict head, 2048² PNG texture, 30 runs each
    python -m bench.glb_writers --backend facemesh
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pygltflib as gl

from face3d.models.backends import backend_class
from face3d.models.export.files import encode_texture
from face3d.models.export.glb import SPARSE_MIN_CM, to_glb
from face3d.models.export.mesh import FaceMesh, MeshLayout, mesh_normals
from scripts.export_digest import glb_content


def pygltflib_glb(layout: MeshLayout, mesh: FaceMesh, texture: bytes, mime: str) -> bytes:
    """The same GLB built through pygltflib's objects, everything per call."""
    n = len(layout.gl_vertex)
    index_type, index_dtype = (gl.UNSIGNED_SHORT, "<u2") if n < 65536 else (gl.UNSIGNED_INT, "<u4")
    base = np.asarray(mesh.base, np.float32)
    positions = (base[layout.gl_vertex] * np.float32(0.01)).astype("<f4")
    normals = mesh_normals(layout, base)[layout.gl_vertex].astype("<f4")
    uvs = np.array(layout.gl_uvs, "<f4")
    uvs[:, 1] = 1.0 - uvs[:, 1]
    payloads: list[tuple[bytes, int | None]] = [
        (layout.gl_triangles.astype(index_dtype).tobytes(), gl.ELEMENT_ARRAY_BUFFER),
        (uvs.tobytes(), gl.ARRAY_BUFFER),
    ]
    accessors = [
        gl.Accessor(bufferView=0, componentType=index_type, count=layout.gl_triangles.size, type=gl.SCALAR),
        gl.Accessor(bufferView=1, componentType=gl.FLOAT, count=n, type=gl.VEC2),
    ]
    targets = []
    for deltas in () if layout.morph_deltas is None else layout.morph_deltas:
        moved = deltas[layout.gl_vertex].astype(np.float32) * np.float32(0.01)
        keep = np.flatnonzero(np.abs(moved).max(axis=1) > SPARSE_MIN_CM * 0.01)
        listed = np.concatenate([moved[keep], np.zeros((int(len(keep) < n), 3), np.float32)])
        view = len(payloads)
        payloads += [(keep.astype(index_dtype).tobytes(), None), (moved[keep].astype("<f4").tobytes(), None)]
        sparse = gl.Sparse(
            count=len(keep),
            indices=gl.AccessorSparseIndices(bufferView=view, componentType=index_type),
            values=gl.AccessorSparseValues(bufferView=view + 1),
        )
        targets.append(gl.Attributes(POSITION=len(accessors)))
        accessors.append(
            gl.Accessor(
                componentType=gl.FLOAT, count=n, type=gl.VEC3, sparse=sparse,
                min=listed.min(axis=0).tolist(), max=listed.max(axis=0).tolist(),
            )
        )  # fmt: skip
    first = len(payloads)
    payloads += [
        (positions.tobytes(), gl.ARRAY_BUFFER),
        (normals.tobytes(), gl.ARRAY_BUFFER),
        (texture, None),
    ]
    accessors += [
        gl.Accessor(bufferView=first, componentType=gl.FLOAT, count=n, type=gl.VEC3,
                    min=positions.min(axis=0).tolist(), max=positions.max(axis=0).tolist()),
        gl.Accessor(bufferView=first + 1, componentType=gl.FLOAT, count=n, type=gl.VEC3),
    ]  # fmt: skip
    views, blob, offset = [], [], 0
    for payload, target in payloads:
        views.append(gl.BufferView(buffer=0, byteOffset=offset, byteLength=len(payload), target=target))
        blob.append(payload + b"\0" * (-len(payload) % 4))
        offset += len(blob[-1])
    primitive = gl.Primitive(
        attributes=gl.Attributes(POSITION=len(accessors) - 2, NORMAL=len(accessors) - 1, TEXCOORD_0=1),
        indices=0, material=0, targets=targets or None,
    )  # fmt: skip
    extras = {"targetNames": list(layout.morph_names)} if layout.morph_names else {}
    weights = [float(w) for w in mesh.weights] or None
    gltf = gl.GLTF2(
        asset=gl.Asset(generator="face3d", version="2.0"),
        scene=0,
        scenes=[gl.Scene(nodes=[0])],
        nodes=[gl.Node(mesh=0, name=layout.name)],
        meshes=[gl.Mesh(name=layout.name, primitives=[primitive], weights=weights, extras=extras)],
        accessors=accessors,
        bufferViews=views,
        buffers=[gl.Buffer(byteLength=offset)],
        images=[gl.Image(bufferView=first + 2, mimeType=mime, name="texture")],
        samplers=[gl.Sampler(magFilter=gl.LINEAR, minFilter=gl.LINEAR_MIPMAP_LINEAR,
                             wrapS=gl.CLAMP_TO_EDGE, wrapT=gl.CLAMP_TO_EDGE)],
        textures=[gl.Texture(sampler=0, source=0)],
        materials=[gl.Material(
            name=layout.name, doubleSided=layout.double_sided,
            pbrMetallicRoughness=gl.PbrMetallicRoughness(
                baseColorTexture=gl.TextureInfo(index=0), metallicFactor=0.0, roughnessFactor=1.0),
        )],
    )  # fmt: skip
    gltf.set_binary_blob(b"".join(blob))
    return b"".join(gltf.save_to_bytes())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="ict")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--uv-size", type=int, default=2048)
    args = parser.parse_args()
    hooks = backend_class(args.backend).mesh_export()
    layout = hooks.layout
    rng = np.random.default_rng(0)
    vertices = rng.normal(0, 5, (layout.vertex_count, 3)).astype(np.float32)
    weights = rng.uniform(0, 1, len(layout.morph_names)).tolist()
    mesh = FaceMesh(vertices, vertices, weights)
    texture = encode_texture(rng.integers(0, 256, (args.uv_size, args.uv_size, 3), dtype=np.uint8))
    ours, theirs = (
        to_glb(layout, mesh, texture, "image/png"),
        pygltflib_glb(layout, mesh, texture, "image/png"),
    )
    if glb_content(ours) != glb_content(theirs):
        raise SystemExit("the two writers disagree: not a fair race")
    times: dict[str, list[float]] = {"face3d": [], "pygltflib": []}
    for _ in range(args.runs):  # alternate, so drift hits both
        for name, write in (("face3d", to_glb), ("pygltflib", pygltflib_glb)):
            start = time.perf_counter()
            write(layout, mesh, texture, "image/png")
            times[name].append((time.perf_counter() - start) * 1000)
    ours_ms, theirs_ms = statistics.median(times["face3d"]), statistics.median(times["pygltflib"])
    print(f"{args.backend} GLB ({len(ours) / 1e6:.1f} MB), p50 of {args.runs}: face3d {ours_ms:.2f} ms, "
          f"pygltflib {theirs_ms:.2f} ms ({theirs_ms / ours_ms:.1f}x)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
