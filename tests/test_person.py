"""Several photos of one person, one head (person mode): the joint fit's parts, the pipeline entry, the
CLI and the HTTP route through the real worker pool, and the error cases (one photo, nine photos, a
non-image, photos without a face, a backend without a morphable model).

The photos: the astronaut, the same photo mirrored and cropped (one person, three photos: what the
tests need is one identity and known views, not a real turned series, which no package we can fetch
ships), a grey square (no face) and image00021 (someone else: the outlier).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from face3d.models.backends.base import BackendConfig
from face3d.models.backends.ict.fit import IctFit
from face3d.models.backends.ict.person import OUTLIER_MM, left_out, select_fits
from face3d.models.errors import ImageError, NoFaceError, OptionsError
from face3d.models.export.document import PersonResultDocument
from face3d.models.geometry.pose import PoseFit
from face3d.models.pipeline import PERSON_FORMATS, Pipeline, ReconstructOptions
from scripts.photos import photo_bytes
from tests.serving import Server, assert_problem, blank_png, start_server  # noqa: F401  (a fixture)
from tests.test_cli import face3d

OPTIONS = ReconstructOptions(uv_size=256, formats=PERSON_FORMATS)


def _jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=92)
    return buf.getvalue()


def one_person() -> list[tuple[str, bytes]]:
    """Three photos of the astronaut: as taken, mirrored, cropped."""
    original = photo_bytes("astronaut")
    image = Image.open(io.BytesIO(original))
    flipped = _jpeg(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    return [
        ("front.jpg", original),
        ("mirrored.jpg", flipped),
        ("crop.jpg", _jpeg(image.crop((60, 40, 460, 400)))),
    ]


@pytest.fixture(scope="module")
def pipeline(weights_cache: Path) -> Pipeline:
    from face3d.models.backends.ict.backend import IctBackend

    torch.set_num_threads(2)
    backend = IctBackend(BackendConfig(cache_dir=weights_cache, buckets=(1, 2, 4, 8)))
    backend.load("cpu")
    return Pipeline(backend, max_pixels=50_000_000)


# ------------------------------------------------------------------------------------- the model side
def test_outliers_are_far_identities_and_the_front_photo_stays(pipeline: Pipeline) -> None:
    """``left_out`` on the photos' own fits: the one far from the median goes; of two that disagree the
    more frontal stays; photos that agree all stay."""
    fitter = pipeline.backend.fitter
    identity = torch.zeros((4, 100))
    identity[3, :10] = 5.0  # a different face
    angles = torch.tensor([0.3, 0.0, 0.5, 0.2])  # yaw, radians: photo 1 is the most frontal
    rotation = torch.stack(
        [
            torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]])
            for c, s in zip(angles.cos(), angles.sin(), strict=True)
        ]
    )
    pose = PoseFit(rotation, torch.ones(4), torch.zeros((4, 3)))
    fits = IctFit(pose, identity, torch.zeros((4, 53)), torch.zeros(4), None)
    far, distance = left_out(fitter, fits)
    assert far.tolist() == [False, False, False, True] and float(distance[3]) > OUTLIER_MM
    pair, _ = left_out(fitter, select_fits(fits, torch.tensor([3, 0])))
    assert pair.tolist() == [False, True]  # two that disagree: the more frontal one (3 at 0.2 rad) stays
    alike, _ = left_out(fitter, select_fits(fits, torch.tensor([0, 1, 2])))
    assert not alike.any()


def test_one_head_from_several_photos(pipeline: Pipeline) -> None:
    photos = [*one_person(), ("grey.png", blank_png()), ("someone-else.jpg", photo_bytes("image00021"))]
    item = pipeline.run_person(photos, OPTIONS)
    assert item.error is None and item.exported is not None
    files = item.exported.files
    assert set(files) == {"face.obj", "face.mtl", "face.png", "face.glb", "face.usdz", "result.json"}
    document = json.loads(files["result.json"])
    assert document["schema"] == "face3d.person-result/1" and len(document["faces"]) == 1
    person = document["person"]
    statuses = [(p["name"], p["status"]) for p in person["photos"]]
    assert statuses == [("front.jpg", "fitted"), ("mirrored.jpg", "fitted"), ("crop.jpg", "fitted"),
                        ("grey.png", "no-face"), ("someone-else.jpg", "outlier")]  # fmt: skip
    fitted = [p for p in person["photos"] if p["status"] == "fitted"]
    identities = {tuple(p["face"]["identity"]) for p in fitted}
    assert len(identities) == 1  # one identity for every fitted photo
    assert tuple(document["faces"][0]["identity"]) in identities
    for p in fitted:  # each photo its own pose, expression and residual
        assert {"pose", "expression", "fit_residual_px"} <= set(p["face"]) and p["face"][
            "fit_residual_px"
        ] < 2
        assert p["face"]["files"] == []
    assert abs(sum(p["texture_share"] for p in person["photos"]) - 1) < 1e-3
    assert person["photos"][4]["identity_distance_mm"] > OUTLIER_MM  # reported, not averaged in
    assert person["photos"][4]["face"]["identity"] != document["faces"][0]["identity"]
    assert person["texture_seen"] >= person["texture_seen_reference"] > 0.1
    assert isinstance(item.exported.document, PersonResultDocument)
    texture = np.asarray(Image.open(io.BytesIO(files["face.png"])))
    assert texture.shape == (256, 256, 3) and texture.std() > 10
    mesh = trimesh.load(io.BytesIO(files["face.glb"]), file_type="glb", force="mesh")
    assert len(mesh.vertices) > 20_000


@pytest.mark.parametrize(
    ("count", "error", "fragment"),
    [(1, OptionsError, "2 to 8 photos"), (9, OptionsError, "2 to 8 photos")],
)
def test_photo_counts(pipeline: Pipeline, count: int, error: type, fragment: str) -> None:
    item = pipeline.run_person([("a.jpg", photo_bytes("astronaut"))] * count, OPTIONS)
    assert isinstance(item.error, error) and fragment in str(item.error)


def test_bad_inputs(pipeline: Pipeline) -> None:
    photos = one_person()[:1]
    not_image = pipeline.run_person([*photos, ("notes.txt", b"hello")], OPTIONS)
    assert isinstance(not_image.error, ImageError) and "photo 1 (notes.txt)" in str(not_image.error)
    no_face = pipeline.run_person([("a.png", blank_png()), ("b.png", blank_png(200))], OPTIONS)
    assert isinstance(no_face.error, NoFaceError)
    preview = ReconstructOptions(uv_size=256, formats=frozenset({"glb", "preview"}))
    assert isinstance(pipeline.run_person(one_person(), preview).error, OptionsError)


def test_a_backend_without_a_morphable_model_says_so(facemesh) -> None:
    item = Pipeline(facemesh, max_pixels=50_000_000).run_person(one_person(), OPTIONS)
    assert isinstance(item.error, OptionsError) and "morphable model" in str(item.error)


# ---------------------------------------------------------------------------------------------- CLI
@pytest.mark.slow
def test_cli_person(tmp_path: Path) -> None:
    paths = []
    for name, data in [*one_person()[:2], ("grey.png", blank_png())]:
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    out = tmp_path / "out"
    proc = face3d(
        "reconstruct", "--person", *paths, "-o", str(out), "--uv-size", "256", "--formats", "glb,json"
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["face.glb", "result.json"]
    lines = proc.stdout.splitlines()
    assert "front.jpg: fitted" in lines[0] and lines[2].endswith("grey.png: no-face")
    one = face3d("reconstruct", "--person", paths[0], "-o", str(out))
    assert one.returncode == 1 and one.stderr.strip() == (
        "face3d: error: person mode takes 2 to 8 photos of one person, got 1"
    )


# ---------------------------------------------------------------------------------------------- API
@pytest.fixture(scope="module")
def server(start_server: Callable[..., Server]) -> Server:  # noqa: F811
    return start_server(max_person_photos=8)


def post_person(client: httpx.Client, photos: list[tuple[str, bytes]], **params: str) -> httpx.Response:
    files = [("images", (name, data, "image/jpeg")) for name, data in photos]
    return client.post("/v1/reconstruct/person", params=params, files=files)


@pytest.mark.slow
def test_api_person_through_the_worker_pool(server: Server) -> None:
    with server.client() as client:
        response = post_person(client, [*one_person(), ("grey.png", blank_png())])
        assert response.status_code == 200, response.text
        body = response.json()
        assert [p["status"] for p in body["person"]["photos"]] == ["fitted", "fitted", "fitted", "no-face"]
        assert set(body["files"]) == {"face.obj", "face.mtl", "face.png", "face.glb", "result.json"}
        assert body["faces"][0]["files"] and {"decode", "bake", "encode"} <= set(body["timings_ms"])
        stored = client.get(body["files"]["result.json"]).json()
        assert stored["person"] == body["person"]
        glb = client.get(body["files"]["face.glb"])
    mesh = trimesh.load(io.BytesIO(glb.content), file_type="glb", force="mesh")
    assert glb.status_code == 200 and len(mesh.vertices) > 20_000


@pytest.mark.slow
def test_api_person_errors(server: Server) -> None:
    front = one_person()[:1]
    with server.client() as client:
        assert_problem(post_person(client, front), 422, "validation")
        assert_problem(post_person(client, [("grey.png", blank_png(64))] * 9), 413, "too-large")
        not_image = assert_problem(post_person(client, [*front, ("x.jpg", b"not an image at all")]), 400,
                                   "invalid-image")  # fmt: skip
        assert "photo 1 (x.jpg)" in not_image["detail"]
        assert_problem(post_person(client, [("a.png", blank_png()), ("b.png", blank_png())]), 422, "no-face")
        assert_problem(post_person(client, one_person(), formats="glb,preview"), 422, "validation")
        assert_problem(post_person(client, one_person(), all_faces="true"), 422, "validation")
        raw = client.post(
            "/v1/reconstruct/person", content=front[0][1], headers={"Content-Type": "image/jpeg"}
        )
        assert_problem(raw, 415, "unsupported-type")


@pytest.mark.slow
def test_web_page_takes_several_photos(server: Server, tmp_path: Path) -> None:
    """Several photos chosen at once on the page are one person: one head, and the list of photos."""
    from playwright.sync_api import expect, sync_playwright

    from tests.web_helpers import CHROMIUM_ARGS, READY_MS, chromium_path, open_signed_in, save

    paths = []
    for name, data in [*one_person()[:2], ("grey.png", blank_png())]:
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        open_signed_in(page, server)
        page.set_input_files("#file", paths)
        expect(page.locator("#viewer")).to_have_attribute("data-state", "ready", timeout=READY_MS)
        expect(page.locator("#person")).to_be_visible()
        items = page.locator("#person-photos li").all_inner_texts()
        save("person-page.png", page.screenshot(full_page=True))
        browser.close()
    assert errors == []
    assert items[0].startswith("front.jpg (front): fitted") and items[1].startswith("mirrored.jpg: fitted")
    assert items[2] == "grey.png: no face found: left out"


@pytest.mark.slow
def test_cli_person_on_a_server(server: Server, tmp_path: Path) -> None:
    """``--person --server``: the same head through face3d.client and the route."""
    paths = []
    for name, data in one_person()[:2]:
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    token = server.token("cli")["Authorization"].removeprefix("Bearer ")
    out = tmp_path / "out"
    proc = face3d("reconstruct", "--person", *paths, "-o", str(out), "--formats", "glb,json",
                  "--server", server.url, "--token", token)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["face.glb", "result.json"]
    assert json.loads((out / "result.json").read_bytes())["person"]["photos"][1]["name"] == "mirrored.jpg"
    assert proc.stdout.splitlines()[-1] == f"one head from 2 photos -> {out}"
