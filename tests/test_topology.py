"""The shipped topology: mesh validity, winding, symmetry, template scale and UV layout invariants."""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from face3d.models.backends.facemesh.topology import load_topology, rasterize_uv, signed_areas

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def topo():
    return load_topology()


@pytest.fixture(scope="module")
def make_topology():
    """The generator script as a module (it is not part of the installed package)."""
    spec = importlib.util.spec_from_file_location("make_topology", ROOT / "scripts" / "make_topology.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shapes_and_dtypes(topo):
    assert topo.triangles.shape == (852, 3) and topo.triangles.dtype == np.int64
    assert topo.uvs.shape == (468, 2) and topo.uvs.dtype == np.float32
    assert topo.mirror.shape == (468,) and topo.mirror.dtype == np.int64
    assert topo.template.shape == (468, 3) and topo.template.dtype == np.float32
    assert load_topology() is topo  # cached
    assert not topo.triangles.flags.writeable


def test_triangles_are_the_tesselation(topo, make_topology):
    """Every triangle edge is a tesselation edge and every tesselation edge is used."""
    tess = {frozenset(e) for e in make_topology.read_connections()["FACEMESH_TESSELATION"]}
    tri_edges = {frozenset((t[k], t[(k + 1) % 3])) for t in topo.triangles for k in range(3)}
    assert tri_edges == tess
    assert len({frozenset(t) for t in topo.triangles}) == 852


def test_manifold_and_consistent_winding(topo):
    directed = Counter((int(t[k]), int(t[(k + 1) % 3])) for t in topo.triangles for k in range(3))
    assert max(directed.values()) == 1  # each directed edge once: neighbours wind oppositely
    undirected = Counter(frozenset(e) for e in directed)
    assert max(undirected.values()) == 2
    # Disk with three holes (two eyes, the mouth): V - E + F = 2 - 4 boundary loops.
    assert 468 - len(undirected) + 852 == -2


def test_normals_point_out_of_the_face(topo):
    v = topo.template.astype(np.float64)
    a, b, c = (v[topo.triangles[:, k]] for k in range(3))
    normals = np.cross(b - a, c - a)
    # A face is curved like a half-shell: its mean normal z is ~0.5 of the area, never negative.
    assert normals[:, 2].sum() > 0.4 * np.linalg.norm(normals, axis=1).sum()
    assert (normals[:, 2] > 0).mean() > 0.9


def test_mirror_is_a_symmetry_of_the_template(topo):
    m = topo.mirror
    assert (m[m] == np.arange(468)).all()
    midline = m == np.arange(468)
    assert 10 < midline.sum() < 60
    assert np.allclose(topo.template[midline, 0], 0.0)
    reflected = topo.template[m] * np.array([-1.0, 1.0, 1.0], dtype=np.float32)
    assert np.allclose(reflected, topo.template, atol=1e-5)
    # The subject's left (MediaPipe's "left eye", landmark 263 corner) is on +X.
    assert topo.template[263, 0] > 0 > topo.template[33, 0]


def test_template_scale_and_frame(topo, make_topology):
    sets = make_topology.read_connections()
    left, right = make_topology.eye_centres(topo.template.astype(np.float64), sets)
    assert np.linalg.norm(left - right) == pytest.approx(6.3, abs=1e-4)
    assert topo.template[10, 1] > topo.template[152, 1]  # forehead (10) above chin (152): +Y up
    assert int(np.argmax(topo.template[:, 2])) in (1, 4)  # the nose tip is the nearest point: +Z out


def test_uv_inside_unit_square_and_symmetric(topo):
    uv = topo.uvs
    assert (uv >= 0).all() and (uv <= 1).all()
    assert np.allclose(uv[topo.mirror, 0], 1 - uv[:, 0], atol=1e-6)
    assert np.array_equal(uv[topo.mirror, 1], uv[:, 1])


def test_uv_has_no_flips_or_overlaps(topo):
    assert (signed_areas(topo.uvs, topo.triangles) > 0).all()
    owner, _, hits = rasterize_uv(topo.uvs, topo.triangles, 1024)
    assert hits.max() == 1
    assert (owner >= 0).mean() > 0.8  # the atlas fills most of the square


def test_rasterize_uv_on_a_known_triangle():
    """Lower-left half of a 4x4 grid: texel centres strictly below the diagonal, exact barycentrics."""
    uvs = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    owner, bary, hits = rasterize_uv(uvs, np.array([[0, 1, 2]]), 4)
    rows, cols = np.mgrid[0:4, 0:4]
    u, v = (cols + 0.5) / 4, 1 - (rows + 0.5) / 4
    inside = u + v <= 1
    assert np.array_equal(owner >= 0, inside)
    assert np.array_equal(hits > 0, u + v < 1)
    assert np.allclose(bary[inside], np.stack([1 - u - v, u, v], axis=-1)[inside], atol=1e-6)
