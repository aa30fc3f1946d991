"""USDZ (models/export/usdz.py): Pixar's ARKit compliance checker passes it, and usd-core reads back the
head, its texture, its ARKit blend shapes and, skinned by UsdSkel, the face at the fitted weights.

The ict face is the synthetic one of tests/test_export_ict.py (no weights or photos needed); the
facemesh cap checks that the writer is generic (no morph targets, double-sided)."""

from __future__ import annotations

import io
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from pxr import Usd, UsdGeom, UsdShade, UsdSkel, UsdUtils

from face3d.models.backends.ict.export import ict_export
from face3d.models.backends.ict.topology import HeadTopology, load_head_topology
from face3d.models.export.files import export_files
from face3d.models.export.glb import SPARSE_MIN_CM
from face3d.models.reconstruction import Face, Reconstruction
from tests.test_export_ict import face  # noqa: F401  (the fixture)


@pytest.fixture(scope="module")
def topo() -> HeadTopology:
    return load_head_topology()


@pytest.fixture(scope="module")
def usdz(face: Face, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    files = export_files(Reconstruction(400, 400, [face], {}), None, ict_export(), {"usdz", "glb"})
    assert set(files) == {"face.usdz", "face.glb"}
    path = tmp_path_factory.mktemp("usdz") / "face.usdz"
    path.write_bytes(files["face.usdz"])
    return path


def _compliance(path: Path) -> tuple[list[str], list[str], list[str]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the checker's own notice of its successor
        checker = UsdUtils.ComplianceChecker(arkit=True)
    checker.CheckCompliance(str(path))
    return checker.GetErrors(), checker.GetFailedChecks(), checker.GetWarnings()


def test_usdz_passes_the_arkit_compliance_checker(usdz: Path) -> None:
    errors, failed, warned = _compliance(usdz)
    assert errors == [] and failed == [], (errors, failed)
    assert warned == []
    with zipfile.ZipFile(usdz) as package:  # the layer first, the texture inside the package
        assert package.namelist() == ["face.usdc", "face.png"]


def test_usdz_head_texture_and_units(usdz: Path, face: Face, topo: HeadTopology) -> None:  # noqa: F811
    stage = Usd.Stage.Open(str(usdz))
    assert UsdGeom.GetStageMetersPerUnit(stage) == 1.0 and UsdGeom.GetStageUpAxis(stage) == "Y"
    assert stage.GetDefaultPrim().GetPath() == "/Root"
    mesh = UsdGeom.Mesh(stage.GetPrimAtPath("/Root/Head/head"))
    points = np.array(mesh.GetPointsAttr().Get())
    np.testing.assert_allclose(points, face.model.base_vertices * 0.01, atol=1e-7)  # metres
    indices = np.array(mesh.GetFaceVertexIndicesAttr().Get()).reshape(-1, 3)
    np.testing.assert_array_equal(indices, topo.triangles)
    assert len(mesh.GetNormalsAttr().Get()) == topo.vertex_count
    st = UsdGeom.PrimvarsAPI(mesh).GetPrimvar("st")
    assert st.GetInterpolation() == "faceVarying"
    np.testing.assert_allclose(np.array(st.ComputeFlattened()).reshape(-1, 3, 2), topo.uvs[topo.triangle_uvs])
    material, _ = UsdShade.MaterialBindingAPI(mesh.GetPrim()).ComputeBoundMaterial()
    shader = material.ComputeSurfaceSource()[0]
    assert shader.GetIdAttr().Get() == "UsdPreviewSurface"
    texture = UsdShade.Shader(shader.GetInput("diffuseColor").GetConnectedSource()[0].GetPrim())
    assert texture.GetInput("file").Get().path == "face.png"


def test_usdz_blend_shapes_are_the_glb_targets_at_the_fitted_weights(
    usdz: Path,
    face: Face,  # noqa: F811
    topo: HeadTopology,
) -> None:
    stage = Usd.Stage.Open(str(usdz))
    mesh = UsdGeom.Mesh(stage.GetPrimAtPath("/Root/Head/head"))
    binding = UsdSkel.BindingAPI(mesh.GetPrim())
    names = list(binding.GetBlendShapesAttr().Get())
    assert names == list(ict_export().layout.morph_names) and len(names) == 51 and "mouthSmileLeft" in names
    assert len(binding.GetBlendShapeTargetsRel().GetTargets()) == 51
    animation = UsdSkel.Animation(stage.GetPrimAtPath("/Root/Head/Skeleton/Expression"))
    weights = dict(
        zip(animation.GetBlendShapesAttr().Get(), animation.GetBlendShapeWeightsAttr().Get(), strict=True)
    )
    assert weights["jawOpen"] == pytest.approx(0.6) and weights["browInnerUp"] == pytest.approx(0.4)
    # UsdSkel's own skinning (what RealityKit evaluates) gives the fitted head
    stage.SetEditTarget(stage.GetSessionLayer())
    assert UsdSkel.BakeSkinning(stage.Traverse())
    skinned = np.array(mesh.GetPointsAttr().Get())
    np.testing.assert_allclose(skinned, face.vertices * 0.01, atol=2 * SPARSE_MIN_CM * 0.01)


def test_usdz_of_a_plain_mesh_passes_too(tmp_path: Path) -> None:
    from tests.test_export import CAP_EXPORT, _photo, _rec

    files = export_files(_rec(1), _photo(), CAP_EXPORT, {"usdz"}, texture_format="jpeg")
    assert set(files) == {"face.usdz"}
    path = tmp_path / "face.usdz"
    path.write_bytes(files["face.usdz"])
    errors, failed, _ = _compliance(path)
    assert errors == [] and failed == [], (errors, failed)
    assert zipfile.ZipFile(io.BytesIO(files["face.usdz"])).namelist() == ["face.usdc", "face.jpg"]
    stage = Usd.Stage.Open(str(path))
    (mesh,) = [UsdGeom.Mesh(p) for p in stage.Traverse() if p.IsA(UsdGeom.Mesh)]
    assert UsdSkel.BindingAPI(mesh.GetPrim()).GetBlendShapesAttr().Get() is None
