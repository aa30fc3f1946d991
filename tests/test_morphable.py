"""The ICT morphable head: shipped asset, MIT notice, MediaPipe correspondence, and the batched fit.

Round trip: landmarks synthesised from random ICT heads (identity ~ N(0, 1), sparse expressions
uniform in [0, 1], yaw/pitch/roll within ±35/20/20°, 6-15 px/cm, 0.5 px noise on x, y, z) are fitted
back; the error is the mean distance over ICT's narrow face area (vertices 0..6705, the region the
landmarks constrain) between fitted and true vertices in model space (cm -> mm).
"""

from __future__ import annotations

import fnmatch
import importlib.resources
import io
import json
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from face3d.models.backends.ict.fit import IctFit, IctFitter
from face3d.models.backends.ict.model import (
    LICENSE_FILE,
    MEDIAPIPE_BLENDSHAPES,
    IctModel,
    load_ict_model,
    load_mediapipe_correspondence,
)
from face3d.models.geometry.ibug68 import IBUG68_INDEX
from face3d.models.geometry.pose import PoseFit

ROOT = Path(__file__).resolve().parents[1]
ICT_SOURCE = ROOT.parent / "shared" / "ict-facekit"
REFERENCE = Path(__file__).parent / "data" / "mediapipe_reference.json"


@pytest.fixture(scope="module")
def model() -> IctModel:
    return load_ict_model()


@pytest.fixture(scope="module")
def fitter(model: IctModel) -> IctFitter:
    return IctFitter(model, load_mediapipe_correspondence())


def random_heads(
    fitter: IctFitter, faces: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, PoseFit, torch.Tensor]:
    rng = np.random.default_rng(seed)
    identity = torch.tensor(rng.standard_normal((faces, 100)), dtype=torch.float32)
    expression = torch.tensor(rng.uniform(0, 1, (faces, 53)) * (rng.uniform(size=(faces, 53)) < 0.15))
    angles = rng.uniform(-1, 1, (faces, 3)) * [35, 20, 20]
    rotation = torch.tensor(Rotation.from_euler("YXZ", angles, degrees=True).as_matrix(), dtype=torch.float32)
    scale = torch.tensor(rng.uniform(6, 15, faces), dtype=torch.float32)
    shift = torch.tensor(
        np.c_[rng.uniform(200, 400, faces), -rng.uniform(200, 400, faces), rng.uniform(-50, 50, faces)]
    )
    pose = PoseFit(rotation=rotation, scale=scale, translation_cam=shift.float())
    lm = fitter.landmarks(identity, expression.float(), pose)
    lm = lm + 0.5 * torch.tensor(rng.standard_normal(lm.shape), dtype=torch.float32)
    return identity, expression.float(), pose, lm


def narrow_face_error_mm(
    fitter: IctFitter, fit: IctFit, identity: torch.Tensor, expression: torch.Tensor
) -> torch.Tensor:
    n = fitter.model.narrow_face_vertices
    truth = fitter.vertices(identity, expression)[:, :n]
    return (fit.vertices[:, :n] - truth).norm(dim=-1).mean(dim=1) * 10


def test_asset_shapes_and_layout(model: IctModel) -> None:
    v = 24591
    assert model.neutral.shape == (v, 3) and model.identity.shape == (100, v, 3)
    assert model.expression.shape == (53, v, 3) and len(set(model.expression_names)) == 53
    assert model.triangles.shape == (48836, 3) and model.triangles.max() == v - 1
    assert model.triangle_uvs.max() == len(model.uvs) - 1
    assert model.part_names[:2] == ("face", "head_neck") and "teeth" in model.part_names
    assert (np.diff(model.vertex_part) >= 0).all()  # parts are contiguous vertex ranges
    assert (
        model.vertex_part[model.landmarks68] == 0
    ).all() and model.landmarks68.max() < model.narrow_face_vertices
    face_uv = model.uvs[model.triangle_uvs[model.triangle_material == model.material_names.index("M_Face")]]
    back_uv = model.uvs[
        model.triangle_uvs[model.triangle_material == model.material_names.index("M_BackHead")]
    ]
    assert (
        face_uv.min() >= 0
        and face_uv.max() <= 1
        and back_uv[..., 0].min() >= 1
        and back_uv[..., 0].max() <= 2
    )
    # Counter-clockwise seen from outside: the triangles at the nose tip face +Z.
    tri = model.triangles[model.vertex_part[model.triangles].max(1) == 0]
    a, b, c = (model.neutral[tri[:, k]] for k in range(3))
    near = np.linalg.norm((a + b + c) / 3 - model.neutral[model.landmarks68[30]], axis=1) < 1.0
    assert np.cross(b - a, c - a)[near].sum(0)[2] > 0
    # Axes: the subject's left eye (iBUG 45) is at +X, the eyes above the mouth (+Y up).
    lm = model.neutral[model.landmarks68]
    assert lm[45, 0] > 3 > -3 > lm[36, 0] and lm[36, 1] > lm[51, 1]


def test_mit_notice_ships_in_the_package() -> None:
    text = LICENSE_FILE.read_text()
    assert "MIT License" in text and "Copyright (c) 2020 USC Institute for Creative Technologies" in text
    assert "Kalle Bladin" in text  # CREDITS.md travels too
    packaged = importlib.resources.files("face3d.models").joinpath("data", LICENSE_FILE.name)
    assert packaged.is_file()
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for name in ("ICT-FaceKit-LICENSE.txt", "ict_head.npz", "ict_mediapipe.npz"):
        assert any(fnmatch.fnmatch(f"data/{name}", g) for g in globs["face3d.models"]), name


def test_zip_writer_is_deterministic() -> None:
    from scripts.make_ict_asset import zip_bytes

    arrays = {"a": np.arange(12, dtype=np.int16).reshape(3, 4), "names": np.array(["x", "yz"])}
    first, second = zip_bytes(arrays), zip_bytes(arrays)
    assert first == second
    with np.load(io.BytesIO(first)) as data:
        assert (data["a"] == arrays["a"]).all() and list(data["names"]) == ["x", "yz"]


@pytest.mark.skipif(not ICT_SOURCE.is_dir(), reason="needs ../shared/ict-facekit")
def test_asset_precision_against_the_source(model: IctModel) -> None:
    """int16 fixed point at 0.01 mm: each stored delta within 0.005 mm of ICT's float32."""
    with np.load(ICT_SOURCE / "ict_face_model_light.npz") as src:
        n = len(model.neutral)
        assert np.array_equal(model.neutral, src["neutral"][:n])
        assert np.abs(model.identity - src["identity_deltas"][:, :n]).max() <= 0.0005 + 1e-6
        assert np.abs(model.expression - src["expression_deltas"][:, :n]).max() <= 0.0005 + 1e-6
        assert tuple(src["expression_names"]) == model.expression_names


@pytest.mark.skipif(not ICT_SOURCE.is_dir(), reason="needs ../shared/ict-facekit")
def test_asset_rebuild_matches_the_committed_file() -> None:
    """A fresh build has the committed file's members, in order, with identical .npy bytes and fixed
    zip metadata; with the deterministic writer above, that is a byte-identical file. (The full
    byte comparison, LZMA included, is ``python scripts/make_ict_asset.py --check``: ~20 s.)"""
    from scripts.make_ict_asset import OUT_FILE, ZIP_DATE_TIME, build

    arrays = build(ICT_SOURCE)
    with zipfile.ZipFile(OUT_FILE) as zf:
        infos = zf.infolist()
        assert [i.filename for i in infos] == [f"{k}.npy" for k in arrays]
        for info, (name, arr) in zip(infos, arrays.items(), strict=True):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
            assert zf.read(info) == buf.getvalue(), name
            assert info.date_time == ZIP_DATE_TIME and info.compress_type == zipfile.ZIP_LZMA


def test_blendshape_mapping(model: IctModel) -> None:
    names = [MEDIAPIPE_BLENDSHAPES[i] for i in model.blendshape_index]
    assert set(names) == set(MEDIAPIPE_BLENDSHAPES) - {"_neutral"}  # every score drives a shape
    assert names.count("browInnerUp") == names.count("cheekPuff") == 2
    scores = np.zeros(52, np.float32)
    scores[MEDIAPIPE_BLENDSHAPES.index("eyeBlinkLeft")] = 0.8
    weights = model.expression_from_blendshapes(scores)
    assert weights[model.expression_names.index("eyeBlink_L")] == pytest.approx(0.8) and weights.sum() == 0.8
    # "_L" is the subject's left (+X) in ICT, as "Left" is in MediaPipe (checked on its canonical face).
    blink = model.expression[model.expression_names.index("eyeBlink_L")]
    assert model.neutral[np.linalg.norm(blink, axis=1) > 0.1, 0].min() > 0


def test_blendshape_names_match_the_blendshape_net() -> None:
    blendshapes = pytest.importorskip("face3d.models.nets.blendshapes")
    assert blendshapes.BLENDSHAPE_NAMES == MEDIAPIPE_BLENDSHAPES


def test_correspondence(model: IctModel) -> None:
    corr = load_mediapipe_correspondence()
    assert corr.triangle.shape == (478,) and corr.barycentric.shape == (478, 3)
    assert corr.barycentric.min() >= -1e-6 and np.allclose(corr.barycentric.sum(1), 1, atol=1e-5)
    residual_mm = corr.residual_cm[:468] * 10
    assert np.median(residual_mm) < 0.5 and residual_mm.max() < 3.0
    assert (corr.weight[:468] == 1).all() and (corr.weight[468:] == 0).all()
    on_mean = np.einsum("pk,pkc->pc", corr.barycentric, model.neutral[corr.vertex_ids(model)])
    gap_mm = np.linalg.norm(on_mean[IBUG68_INDEX] - model.neutral[model.landmarks68], axis=1) * 10
    assert gap_mm[30] < 3.0  # nose tip: MediaPipe 4 lands on ICT's nose-tip landmark
    assert np.median(gap_mm[17:]) < 2.0 and gap_mm[17:].max() < 6.0  # brows, nose, eyes, mouth
    parts = model.vertex_part[corr.vertex_ids(model)[:, 0]]
    assert (parts[:468] == 0).all()
    assert (parts[468:473] == model.part_names.index("eyeball_right")).all()  # the subject's right iris
    assert (parts[473:] == model.part_names.index("eyeball_left")).all()
    jaw = np.linalg.norm(model.expression[model.expression_names.index("jawOpen")], axis=1)
    lip_drop = (jaw[corr.vertex_ids(model)] * corr.barycentric).sum(1)
    assert lip_drop[13] < 0.5 < 2.0 < lip_drop[14]  # inner upper lip stays, inner lower lip drops


def test_fit_round_trip(fitter: IctFitter) -> None:
    identity, expression, pose, lm = random_heads(fitter, 8, seed=1)
    fit = fitter.fit(lm)
    error = narrow_face_error_mm(fitter, fit, identity, expression)
    assert error.mean() <= 2.0 and error.max() <= 3.0, error
    assert (fit.expression >= 0).all() and (fit.expression <= 1).all()
    assert (fit.residual_px < 1.0).all()
    assert (fit.pose.euler_degrees() - pose.euler_degrees()).abs().max() < 3.0
    assert torch.allclose(torch.linalg.det(fit.pose.rotation), torch.ones(8), atol=1e-4)
    assert ((fit.pose.scale - pose.scale).abs() / pose.scale).max() < 0.05
    assert fit.vertices.shape == (8, len(fitter.model.neutral), 3)


def test_fit_with_blendshape_scores_and_468_points(fitter: IctFitter) -> None:
    identity, expression, _, lm = random_heads(fitter, 6, seed=2)
    scores = torch.zeros(6, 52)
    scores[:, torch.as_tensor(fitter.model.blendshape_index)] = (expression + 0.1 * torch.randn(6, 53)).clamp(
        0, 1
    )
    fit = fitter.fit(lm[:, :468], blendshapes=scores)
    assert narrow_face_error_mm(fitter, fit, identity, expression).mean() <= 2.0


def test_project_landmarks68(fitter: IctFitter) -> None:
    identity, expression, pose, lm = random_heads(fitter, 3, seed=3)
    exact = IctFit(
        pose=pose, identity=identity, expression=expression, residual_px=torch.zeros(3), vertices=None
    )
    shape = fitter.model.shape(identity[0].numpy(), expression[0].numpy())
    want = pose.to_image(torch.tensor(shape[fitter.model.landmarks68]))[0]
    # the jaw (0-16) follows the silhouette at the pose: tests/test_ict_contour.py
    assert torch.allclose(fitter.project_landmarks68(exact)[0, 17:], want[17:], atol=1e-3)
    fitted = fitter.project_landmarks68(fitter.fit(lm))
    assert (fitted - fitter.project_landmarks68(exact))[..., :2].norm(dim=-1).mean() < 1.0


def test_fit_real_mediapipe_landmarks(fitter: IctFitter) -> None:
    """MediaPipe's own output on the test photos: the head fits within ~1% of the eye distance, and
    its 68 landmark vertices land on the mapped iBUG points (brows, nose, eyes, mouth)."""
    photos = json.loads(REFERENCE.read_text())["photos"]
    lm = torch.tensor(np.concatenate([p["landmarks_478"] for p in photos.values()]), dtype=torch.float32)
    fit = fitter.fit(lm)
    iod = (lm[:, 263, :2] - lm[:, 33, :2]).norm(dim=-1)
    assert (fit.residual_px / iod < 0.02).all(), fit.residual_px / iod
    assert (fit.identity.abs() < 5).all()
    gap = (
        fitter.project_landmarks68(fit)[:, 17:, :2] - lm[:, torch.tensor(IBUG68_INDEX[17:].copy()), :2]
    ).norm(dim=-1)
    assert (gap.median(dim=1).values / iod < 0.05).all()
