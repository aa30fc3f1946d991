"""USDZ (Apple's AR Quick Look and RealityKit format) of any backend's mesh (models/export/mesh.py),
written with Pixar's usd-core and meant to pass its ARKit compliance checker
(``UsdUtils.ComplianceChecker(arkit=True)``, tests/test_export_usdz.py).

The package holds one binary layer (``<prefix>.usdc``, first, as ARKit wants) and the texture file:

* ``/Root`` (Xform, the default prim, kind ``component``) > ``Head`` (SkelRoot) > the mesh
  (``UsdGeomMesh``: positions in metres, the layout's triangles, face-varying ``primvars:st`` with
  v up, vertex normals) bound to a ``UsdPreviewSurface`` material whose base colour reads the
  packaged texture through ``UsdUVTexture``;
* with morph targets: one ``UsdSkelBlendShape`` per target (sparse ``offsets`` + ``pointIndices``,
  metres, named after the target), bound to the mesh, and a one-joint ``Skeleton`` whose
  ``SkelAnimation`` sets the face's weights: the mesh's points are ``FaceMesh.base`` and UsdSkel
  applies the weights, so a UsdSkel-aware viewer shows the face as the GLB does and an app can set
  the blend shape weights itself.

Stage metadata: ``metersPerUnit = 1``, ``upAxis = Y`` (the axes of models/reconstruction.py: +Y up, +Z
out of the face). usd-core writes packages to files, so the bytes pass through a temporary folder.
"""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path

import numpy as np

from face3d.models.export.mesh import FaceMesh, MeshLayout, mesh_normals

SPARSE_MIN_CM = 0.005  # as the GLB's sparse morph targets: offsets below 0.05 mm are left out


@cache
def _sparse_targets(layout: MeshLayout) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Per morph target, the ids of the vertices it moves and their offsets in metres (once per layout)."""
    targets = []
    for deltas in () if layout.morph_deltas is None else layout.morph_deltas:
        ids = np.flatnonzero(np.abs(deltas).max(axis=1) > SPARSE_MIN_CM)
        targets.append((ids.astype(np.int32), (deltas[ids] * 0.01).astype(np.float32)))
    return tuple(targets)


def _ident(name: str) -> str:
    """A valid USD prim name from a target or layout name."""
    clean = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    return clean if clean and not clean[0].isdigit() else f"_{clean}"


def to_usdz(
    layout: MeshLayout, mesh: FaceMesh, texture_bytes: bytes, texture_name: str, prefix: str
) -> bytes:
    """The USDZ of one face: ``mesh.base`` (metres) with ``mesh.weights`` on the layout's morph targets
    as UsdSkel blend shapes, textured with ``texture_bytes`` (PNG or JPEG, packaged as ``texture_name``)."""
    from pxr import Gf, Kind, Sdf, Usd, UsdGeom, UsdShade, UsdSkel, Vt

    with tempfile.TemporaryDirectory(prefix="face3d-usdz-") as tmp:
        folder = Path(tmp)
        (folder / texture_name).write_bytes(texture_bytes)
        layer_path = folder / f"{prefix}.usdc"
        stage = Usd.Stage.CreateNew(str(layer_path))
        UsdGeom.SetStageMetersPerUnit(stage, 1.0)
        UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
        root = UsdGeom.Xform.Define(stage, "/Root")
        stage.SetDefaultPrim(root.GetPrim())
        Usd.ModelAPI(root.GetPrim()).SetKind(Kind.Tokens.component)
        skel_root = UsdSkel.Root.Define(stage, "/Root/Head")
        name = _ident(layout.name)

        geom = UsdGeom.Mesh.Define(stage, f"/Root/Head/{name}")
        base = np.asarray(mesh.base, np.float32)
        geom.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(base * np.float32(0.01)))
        triangles = np.asarray(layout.triangles, np.int32)
        geom.CreateFaceVertexCountsAttr(Vt.IntArray.FromNumpy(np.full(len(triangles), 3, np.int32)))
        geom.CreateFaceVertexIndicesAttr(Vt.IntArray.FromNumpy(triangles.ravel()))
        geom.CreateOrientationAttr(UsdGeom.Tokens.rightHanded)
        geom.CreateSubdivisionSchemeAttr(UsdGeom.Tokens.none)
        geom.CreateDoubleSidedAttr(bool(layout.double_sided))
        geom.CreateNormalsAttr(Vt.Vec3fArray.FromNumpy(np.asarray(mesh_normals(layout, base), np.float32)))
        geom.SetNormalsInterpolation(UsdGeom.Tokens.vertex)
        lo, hi = base.min(axis=0) * 0.01, base.max(axis=0) * 0.01
        geom.CreateExtentAttr(Vt.Vec3fArray([Gf.Vec3f(*map(float, lo)), Gf.Vec3f(*map(float, hi))]))
        st = UsdGeom.PrimvarsAPI(geom).CreatePrimvar(
            "st", Sdf.ValueTypeNames.TexCoord2fArray, UsdGeom.Tokens.faceVarying
        )
        st.Set(Vt.Vec2fArray.FromNumpy(np.asarray(layout.uvs, np.float32)))
        st.SetIndices(Vt.IntArray.FromNumpy(np.asarray(layout.triangle_uvs, np.int32).ravel()))

        material = UsdShade.Material.Define(stage, f"/Root/Head/{name}_material")
        surface = UsdShade.Shader.Define(stage, f"{material.GetPath()}/surface")
        surface.CreateIdAttr("UsdPreviewSurface")
        surface.CreateInput("roughness", Sdf.ValueTypeNames.Float).Set(1.0)
        surface.CreateInput("metallic", Sdf.ValueTypeNames.Float).Set(0.0)
        reader = UsdShade.Shader.Define(stage, f"{material.GetPath()}/st_reader")
        reader.CreateIdAttr("UsdPrimvarReader_float2")
        reader.CreateInput("varname", Sdf.ValueTypeNames.String).Set("st")
        texture = UsdShade.Shader.Define(stage, f"{material.GetPath()}/texture")
        texture.CreateIdAttr("UsdUVTexture")
        texture.CreateInput("file", Sdf.ValueTypeNames.Asset).Set(texture_name)
        texture.CreateInput("sourceColorSpace", Sdf.ValueTypeNames.Token).Set("sRGB")
        texture.CreateInput("wrapS", Sdf.ValueTypeNames.Token).Set("clamp")
        texture.CreateInput("wrapT", Sdf.ValueTypeNames.Token).Set("clamp")
        texture.CreateInput("st", Sdf.ValueTypeNames.Float2).ConnectToSource(
            reader.ConnectableAPI(), "result"
        )
        rgb = texture.CreateOutput("rgb", Sdf.ValueTypeNames.Float3)
        surface.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f).ConnectToSource(rgb)
        material.CreateSurfaceOutput().ConnectToSource(surface.ConnectableAPI(), "surface")
        UsdShade.MaterialBindingAPI.Apply(geom.GetPrim()).Bind(material)

        if layout.morph_names:
            _blend_shapes(stage, skel_root, geom, layout, mesh)
        stage.GetRootLayer().Save()
        del stage
        package = folder / f"{prefix}.usdz"
        writer = Sdf.ZipFileWriter.CreateNew(str(package))
        writer.AddFile(str(layer_path), layer_path.name)
        writer.AddFile(str(folder / texture_name), texture_name)
        writer.Save()
        return package.read_bytes()


def _blend_shapes(stage, skel_root, geom, layout: MeshLayout, mesh: FaceMesh) -> None:
    """The layout's morph targets as UsdSkel blend shapes on ``geom``, at ``mesh.weights`` through a
    one-joint skeleton's animation (UsdSkel applies blend shapes only to skinned meshes)."""
    from pxr import Gf, UsdSkel, Vt

    names = [_ident(n) for n in layout.morph_names]
    targets = []
    for target, (ids, offsets) in zip(names, _sparse_targets(layout), strict=True):
        shape = UsdSkel.BlendShape.Define(stage, geom.GetPath().AppendChild(target))
        shape.CreateOffsetsAttr(Vt.Vec3fArray.FromNumpy(offsets))
        shape.CreatePointIndicesAttr(Vt.IntArray.FromNumpy(ids))
        targets.append(shape.GetPath())
    skeleton = UsdSkel.Skeleton.Define(stage, skel_root.GetPath().AppendChild("Skeleton"))
    skeleton.CreateJointsAttr(["root"])
    skeleton.CreateJointNamesAttr(["root"])
    skeleton.CreateBindTransformsAttr(Vt.Matrix4dArray([Gf.Matrix4d(1.0)]))
    skeleton.CreateRestTransformsAttr(Vt.Matrix4dArray([Gf.Matrix4d(1.0)]))
    animation = UsdSkel.Animation.Define(stage, skeleton.GetPath().AppendChild("Expression"))
    animation.CreateJointsAttr(["root"])
    animation.CreateTranslationsAttr(Vt.Vec3fArray([Gf.Vec3f(0.0)]))
    animation.CreateRotationsAttr(Vt.QuatfArray([Gf.Quatf(1.0)]))
    animation.CreateScalesAttr(Vt.Vec3hArray([Gf.Vec3h(1.0)]))
    animation.CreateBlendShapesAttr(names)
    animation.CreateBlendShapeWeightsAttr(Vt.FloatArray([float(w) for w in mesh.weights]))
    UsdSkel.BindingAPI.Apply(skeleton.GetPrim()).CreateAnimationSourceRel().SetTargets([animation.GetPath()])
    binding = UsdSkel.BindingAPI.Apply(geom.GetPrim())
    binding.CreateSkeletonRel().SetTargets([skeleton.GetPath()])
    binding.CreateBlendShapesAttr(names)
    binding.CreateBlendShapeTargetsRel().SetTargets(targets)
    binding.CreateJointIndicesPrimvar(constant=True, elementSize=1).Set(Vt.IntArray([0]))
    binding.CreateJointWeightsPrimvar(constant=True, elementSize=1).Set(Vt.FloatArray([1.0]))
    binding.CreateGeomBindTransformAttr(Gf.Matrix4d(1.0))
