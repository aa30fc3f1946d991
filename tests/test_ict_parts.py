"""The ict backend's building blocks on small synthetic inputs: atlas, rasteriser, depth test, openings,
push-pull fill and the fast OBJ number formatting (no weights, no photos: milliseconds each)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from face3d.models.backends.facemesh.topology import rasterize_uv
from face3d.models.backends.ict.fill import PushPullFill
from face3d.models.backends.ict.model import load_ict_model
from face3d.models.backends.ict.regions import inside_polygon, openings
from face3d.models.backends.ict.topology import CELL_MARGIN, load_head_topology
from face3d.models.export.decimal_text import fixed_rows, index_rows
from face3d.models.geometry.uv_raster import rasterize_atlas
from face3d.models.geometry.zbuffer import DepthTest


def test_fixed_rows_match_printf() -> None:
    rng = np.random.default_rng(1)
    values = rng.standard_normal((500, 3)) * np.array([30.0, 0.01, 1e-6])
    values[:4] = [
        [0.0, -0.0, -4e-6],
        [-0.5, 9.999996, -12.000004],
        [1e3, -1e3, 0.5],
        [123.456789, 5e-6, -5e-7],
    ]
    lines = fixed_rows("v ", values, 5).decode().splitlines()
    parsed = np.array([[float(x) for x in line.split()[1:]] for line in lines])
    expected = np.array([[float(f"{x:.5f}") for x in row] for row in values])
    assert all(line.startswith("v ") for line in lines) and len(lines) == len(values)
    np.testing.assert_allclose(parsed, expected, atol=1.01e-5)  # ties may round either way
    assert index_rows("f ", np.array([[1, 2, 3, 4, 5, 6, 7, 8, 9]]), "// // //") == b"f 1/2/3 4/5/6 7/8/9\n"


def test_atlas_packs_every_tile_into_its_own_cell() -> None:
    topo = load_head_topology()
    uvs = topo.uvs[topo.triangle_uvs]  # (T, 3, 2)
    assert uvs.min() >= 0 and uvs.max() <= 1
    cell = np.floor(uvs.mean(axis=1) * 4).astype(int)  # (T, 2) cell of each triangle
    for m, name in enumerate(topo.material_names):
        cells = {tuple(c) for c in cell[topo.triangle_material == m]}
        if name == "M_Face":
            assert cells <= {(i, j) for i in range(3) for j in range(1, 4)}
        else:
            assert len(cells) == 1, name  # one quarter cell per other tile
    others = uvs[topo.triangle_material != topo.material_names.index("M_Face")] * 4
    inner = others - np.floor(others.mean(axis=1, keepdims=True))  # position within the own cell
    assert inner.min() >= CELL_MARGIN - 1e-6 and inner.max() <= 1 - CELL_MARGIN + 1e-6  # gutters
    # GLB vertices: one per distinct (vertex, atlas UV); triangles keep their vertices
    np.testing.assert_array_equal(topo.gl_vertex[topo.gl_triangles], topo.triangles)
    np.testing.assert_allclose(topo.gl_uvs[topo.gl_triangles], uvs)


def test_head_is_mirror_symmetric_in_shape_and_face_tile() -> None:
    model, topo = load_ict_model(), load_head_topology()
    mirrored = model.neutral[topo.mirror] * np.array([-1, 1, 1])
    assert np.abs(mirrored - model.neutral).max() < 0.03  # cm
    assert (topo.mirror[topo.mirror] == np.arange(len(topo.mirror))).mean() > 0.999  # an involution


def test_vectorised_rasteriser_matches_the_reference_one() -> None:
    topo = load_head_topology()
    tris = topo.triangle_uvs[:4000]
    owner, bary = rasterize_atlas(topo.uvs, tris, 256)
    ref_owner, ref_bary, _ = rasterize_uv(topo.uvs, tris, 256)
    assert ((owner >= 0) == (ref_owner >= 0)).all()
    same = (owner == ref_owner) & (owner >= 0)
    np.testing.assert_allclose(bary[same], ref_bary[same], atol=1e-5)
    # where the two chose different (edge-sharing) owners, both barycentrics are valid for their owner
    assert bary[owner >= 0].min() > -1e-6 and np.allclose(bary[owner >= 0].sum(-1), 1, atol=1e-5)


def _grid(x0: float, x1: float, z: float, n: int, first: int) -> tuple[list[list[float]], list[list[int]]]:
    """An n x n vertex sheet at depth z, triangles counter-clockwise as the camera sees image space."""
    steps = np.linspace(x0, x1, n)
    verts = [[x, y, z] for y in steps for x in steps]
    tris = []
    for r in range(n - 1):
        for c in range(n - 1):
            a = first + r * n + c
            tris += [[a, a + n + 1, a + 1], [a, a + n, a + n + 1]]
    return verts, tris


def test_depth_test_hides_what_a_nearer_surface_covers() -> None:
    far_v, far_t = _grid(0, 100, 30.0, 5, 0)  # a far sheet; its centre vertex (index 12) sits at (50, 50)
    near_v, near_t = _grid(40, 60, 0.0, 2, 25)  # a small near square in front of that centre
    verts = torch.tensor([far_v + near_v], dtype=torch.float32)
    visible, facing = DepthTest(torch.tensor(far_t + near_t), cells=64)(
        verts, torch.tensor([200.0]), torch.tensor([200.0])
    )
    assert not visible[0, 12] and visible[0, 25:].all()
    assert visible[0, :25].sum() == 24  # every other vertex of the far sheet is seen
    assert (facing[0] > 0.99).all()


def test_openings_follow_the_landmark_contours() -> None:
    square = torch.tensor([[[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]]])
    points = torch.tensor([[[5.0, 5.0], [11.0, 5.0], [-1.0, 5.0], [9.9, 0.1]]])
    assert inside_polygon(points, square).tolist() == [[True, False, False, True]]
    landmarks = torch.zeros((1, 478, 3))
    landmarks[0, [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308], 1] = 100  # upper inner lip
    landmarks[0, [324, 318, 402, 317, 14, 87, 178, 88, 95], 1] = 120  # lower inner lip
    ring = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95]
    landmarks[0, ring[:11], 0] = torch.linspace(0, 100, 11)
    landmarks[0, ring[11:], 0] = torch.linspace(90, 10, 9)
    eye, mouth = openings(torch.tensor([[[50.0, 110.0, 0.0], [50.0, 90.0, 0.0]]]), landmarks)
    assert mouth.tolist() == [[True, False]] and not eye.any()


def test_fill_is_smooth_and_reproduces_a_constant() -> None:
    model = load_ict_model()
    fill = PushPullFill(model.neutral, model.vertex_part, model.part_names, "cpu")
    skin = np.isin(model.vertex_part, [0, 1])
    front = torch.from_numpy((model.neutral[:, 2] > 5) & skin).float()[None]  # the photo shows the face
    colour = torch.full((1, len(model.neutral), 3), 120.0)
    filled = fill(colour, front)
    assert torch.allclose(
        filled[0, torch.from_numpy(skin)], torch.tensor(120.0), atol=0.5
    )  # the skin group's own colour
    teeth = torch.from_numpy(model.vertex_part == model.part_names.index("teeth"))
    assert torch.allclose(filled[0, teeth], torch.tensor([222.0, 214.0, 196.0]), atol=0.5)  # prior: none seen
    ramp = colour.clone()
    ramp[0, :, 0] = torch.tensor(model.neutral[:, 1] * 4 + 120)  # colour rising with height
    red = fill(ramp, front)[0, :, 0]
    back = torch.from_numpy((model.neutral[:, 2] < -5) & np.isin(model.vertex_part, [0, 1]))
    assert red[back].min() >= ramp[0, :, 0].min() - 1 and red[back].max() <= ramp[0, :, 0].max() + 1
    high = torch.tensor(model.neutral[:, 1])
    assert np.corrcoef(red[back].numpy(), high[back].numpy())[0, 1] > 0.8  # the back keeps the height trend


@pytest.mark.parametrize("cells", [48, 160])
def test_depth_test_runs_on_the_head(cells: int) -> None:
    model, topo = load_ict_model(), load_head_topology()
    verts = torch.from_numpy(model.neutral.copy())[None] * torch.tensor([10.0, -10.0, -10.0]) + 300
    visible, facing = DepthTest(torch.from_numpy(topo.triangles.copy()), cells=cells)(
        verts, torch.tensor([600.0]), torch.tensor([600.0])
    )
    nose_tip, back = int(np.argmax(model.neutral[:, 2])), int(np.argmin(model.neutral[:, 2]))
    assert visible[0, nose_tip] and not visible[0, back] and facing[0, nose_tip] > 0.8
