"""What covers the face is not skin: glasses frames found on real photos (and only on faces that wear
glasses), frames kept out of the texture, and the mouth's parts taking only samples of their kind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from face3d.models.backends import BackendConfig, create_backend
from face3d.models.backends.ict.backend import IctBackend
from face3d.models.backends.ict.bake import HeadBaker, unnatural_hue
from face3d.models.backends.ict.glasses import glasses_frames
from face3d.models.backends.ict.regions import EYE_A, EYE_B
from face3d.models.nets.frontend import StageClock
from scripts.texture_photos import texture_photo

UV = 256
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def backend(weights_cache: Path) -> IctBackend:
    loaded = create_backend("ict", BackendConfig(cache_dir=weights_cache, buckets=(1,)))
    loaded.load("cpu")
    assert isinstance(loaded, IctBackend)
    return loaded


@pytest.fixture(scope="module")
def baker(backend: IctBackend) -> HeadBaker:
    return HeadBaker(backend.topology_, backend.fill, backend.depth, UV, UV)


def _sources(backend: IctBackend, baker: HeadBaker, name: str):
    with torch.inference_mode():
        found = backend._front().locate([texture_photo(name)], False, StageClock(backend.device))
        fitted = backend._fit(found)
        posed = fitted.pose.to_image(fitted.vertices)
        call = (found.batch, found.sizes, found.face_image, posed, fitted.landmarks)
        return found, posed, baker.vertex_sources(*call, "keep")


def _whole_photo(name: str, landmarks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The photo as one window and the landmarks in its grid coordinates."""
    image = np.ascontiguousarray(texture_photo(name))
    height, width = image.shape[:2]
    window = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float()
    grid = (landmarks[..., :2].float() + 0.5) * torch.tensor([2 / width, 2 / height]) - 1
    return window, grid


@pytest.mark.parametrize(
    ("name", "wears"),
    [("face_001", True), ("walter", True), ("astronaut", False), ("jesse", False), ("obama", False)],
)
def test_glasses_are_found_only_where_worn(backend: IctBackend, name: str, wears: bool) -> None:
    # jesse: brow furrows and a side light's shadow beside the nose (takeo's faint rims on a 150 px wide
    # greyscale photo are a known miss: glasses.py)
    with torch.inference_mode():
        found = backend._front().locate([texture_photo(name)], False, StageClock(backend.device))
    window, grid = _whole_photo(name, found.landmarks)
    frames, present = glasses_frames(window, grid, grid)
    assert float(present[0]) == (1.0 if wears else 0.0)
    if not wears:
        assert float(frames.max()) == 0.0


def test_frames_lose_their_photo_weight_around_the_eyes(backend: IctBackend, baker: HeadBaker) -> None:
    found, posed, src = _sources(backend, baker, "face_001")
    window, grid = _whole_photo("face_001", found.landmarks)
    at = (posed[..., :2].float() + 0.5) * torch.tensor(
        [2 / window.shape[-1], 2 / window.shape[-2]]
    ) - 1  # the vertices in the whole photo's grid
    frames, _ = glasses_frames(window, grid, at)
    on_frame = (frames[0] > 0.9) & baker._skin
    # The rims run around the eyes: the framed vertices lie within two eye widths of them.
    lm = found.landmarks[0, :, :2].float()
    eyes = torch.stack([lm[list(EYE_A)].mean(0), lm[list(EYE_B)].mean(0)])
    span = float((eyes[0] - eyes[1]).norm())
    near = torch.cdist(posed[0, :, :2].float(), eyes).amin(dim=1) < 1.4 * span
    assert int(on_frame.sum()) > 100 and bool(near[on_frame].all())
    assert float(src.weight[0, on_frame].max()) < 0.1  # the bake does not take them from the photo


def test_teeth_take_white_samples_and_gums_red_ones(baker: HeadBaker) -> None:
    samples = torch.tensor(
        [(225.0, 215.0, 200.0), (215.0, 140.0, 150.0), (40.0, 20.0, 22.0), (190.0, 95.0, 100.0)]
    )
    teeth, gums = int(baker._teeth.nonzero()[0]), int(baker._gums.nonzero()[-1])
    count = baker._teeth.numel()
    colours = torch.tensor([200.0, 150.0, 120.0]).repeat(4, count, 1)  # a face of skin
    colours[:, teeth], colours[:, gums] = samples, samples
    skin = torch.ones(4, count)
    trust = baker.mouth_samples(colours, skin)
    # white: a tooth; pink: lip; dark: the mouth's depth; red: tongue or gum
    assert trust[:, teeth].tolist() == pytest.approx([1.0, 0.0, 0.0, 0.0])
    assert trust[:, gums].tolist() == pytest.approx([0.0, 1.0, 0.0, 1.0])
    assert float(trust[:, ~(baker._teeth | baker._gums)].min()) == 1.0  # skin is not judged here
    # A greyscale photo: grey gums are what it shows of them (a red prior would be the only colour)
    grey = torch.full((1, count, 3), 150.0)
    assert float(baker.mouth_samples(grey, skin[:1])[0, gums]) == 1.0


def test_a_hand_over_the_face_is_not_baked(weights_cache: Path) -> None:
    # tests/data/profile_photos/takeo-hand.jpg: a hand pasted over the nose and cheek, which
    # MediaPipe's own Hands finds too (tests/data/hand_reference.json)
    photo = np.asarray(Image.open(ROOT / "tests/data/profile_photos/takeo-hand.jpg").convert("RGB"))
    weights = {}
    for hands in (False, True):
        backend = create_backend("ict", BackendConfig(cache_dir=weights_cache, buckets=(1,), hands=hands))
        backend.load("cpu")
        assert isinstance(backend, IctBackend) and (backend.hands is not None) == hands
        with torch.inference_mode():
            found = backend._front().locate([photo], False, StageClock(backend.device))
            fitted = backend._fit(found)
            posed = fitted.pose.to_image(fitted.vertices)
            handed = backend.hands_over(found, posed)
            baker = HeadBaker(backend.topology_, backend.fill, backend.depth, UV, UV)
            call = (found.batch, found.sizes, found.face_image, posed, fitted.landmarks)
            weights[hands] = baker.vertex_sources(*call, "keep", handed).weight[0]
    assert handed is not None
    under = (handed[0] > 0.99) & baker._face_part
    assert int(under.sum()) > 300  # the hand covers the nose and a cheek
    assert float(weights[False][under].mean()) > 0.3  # without hands sought, the hand is baked as skin
    assert float(weights[True][under].max()) < 0.01


def test_a_hard_shadow_is_not_skin_but_a_dark_skin_tone_is(baker: HeadBaker) -> None:
    count = baker._skin.numel()
    weight = torch.ones(2, count)
    shadow = torch.zeros(count, dtype=torch.bool)
    shadow[::10] = True
    colours = torch.full((2, count, 3), 150.0)
    colours[0, shadow] = 12.0  # face 0: lit skin with hard-shadowed vertices the light model left black
    colours[1] = 45.0  # face 1: a dark skin tone, evenly lit ...
    colours[1, shadow] = 35.0  # ... with its darker spots (a crease, stubble)
    unlit = baker.unlit(colours, weight)
    assert float(unlit[0, shadow].min()) == 1.0 and float(unlit[0, ~shadow].max()) == 0.0
    assert float(unlit[1].max()) == 0.0


def test_the_neck_takes_only_skin_coloured_samples(baker: HeadBaker) -> None:
    from face3d.models.backends.ict.model import load_ict_model

    model = load_ict_model()
    neutral, chin = model.neutral, model.neutral[model.landmarks68[8]]
    neck = baker._neck.numpy()
    assert neck[model.landmarks68[8]] == 0.0  # the chin (and a beard on it) is not neck
    skin = baker._skin.numpy()
    front = skin & (neutral[:, 1] < chin[1] - 3) & (np.abs(neutral[:, 0]) < 2) & (neutral[:, 2] > 0)
    under_jaw = skin & (np.abs(neutral[:, 1] - (chin[1] - 0.8)) < 0.3) & (np.abs(neutral[:, 0]) > 4)
    assert front.any() and under_jaw.any()
    assert neck[front].min() == 1.0 and neck[under_jaw].min() > 0.9
    # A white collar or a blue shirt is far from the skin; the same skin in shade is not.
    colours = torch.tensor(
        [[[200.0, 150.0, 120.0], [240.0, 245.0, 250.0], [150.0, 180.0, 230.0], [110.0, 80.0, 62.0]]]
    )
    seen = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    assert baker.not_skin(colours, seen)[0].tolist() == pytest.approx([0.0, 1.0, 1.0, 0.0], abs=0.01)


def test_a_lifted_shadow_takes_the_skins_hue_and_blue_or_teal_is_no_skin(baker: HeadBaker) -> None:
    luma = torch.tensor((0.2126, 0.7152, 0.0722))
    colours = torch.tensor([[[200.0, 150.0, 120.0]] * 3 + [[60.0, 50.0, 72.0]]])  # a teal-lit shadow
    gain = torch.ones(1, 4, 3)
    gain[0, 3] = 2.0  # the de-lighting lifts the shadow to the skin's brightness
    skin = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    extra = baker.shadow_hue(colours, gain, skin)
    lifted = colours * gain * extra
    assert extra[0, :3].flatten().tolist() == pytest.approx([1.0] * 9)  # the lit skin keeps its colour
    ratios = lifted[0, 3] / lifted[0, 3, 1]
    assert ratios.tolist() == pytest.approx([200 / 150, 1.0, 120 / 150], rel=1e-3)  # the skin's hue ...
    assert float(lifted[0, 3] @ luma) == pytest.approx(
        float((colours * gain)[0, 3] @ luma), rel=1e-3
    )  # its light
    samples = torch.tensor(
        [[[200.0, 150.0, 120.0], [150.0, 150.0, 152.0], [60.0, 190.0, 190.0], [90.0, 120.0, 200.0]]]
    )
    assert unnatural_hue(samples)[0].tolist() == pytest.approx(
        [0.0, 0.0, 1.0, 1.0]
    )  # skin, grey hair, teal, blue
