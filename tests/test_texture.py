"""UV baking: a rendered round trip, mirror fill, mean fill, seam padding, coverage and batching."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import distance_transform_edt

from face3d.models.backends.facemesh.bake import MIN_FACING_COS, PADDING_TEXELS, TextureBaker
from face3d.models.backends.facemesh.topology import load_topology, rasterize_uv
from face3d.models.geometry.pose import PoseFit

IMAGE = 400
SIZE = 256  # small textures keep the tests fast; the maps are the same at every size


def rotation(yaw: float = 0.0, pitch: float = 0.0) -> torch.Tensor:
    a, b = math.radians(yaw), math.radians(pitch)
    ry = torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    rx = torch.tensor([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    return ry @ rx


def project(yaw: float = 0.0, pitch: float = 0.0) -> torch.Tensor:
    """(1, 468, 3) image-space vertices of the template, centred in the image, ~320 px wide."""
    fit = PoseFit(
        rotation(yaw, pitch)[None], torch.tensor([22.0]), torch.tensor([[IMAGE / 2, -IMAGE / 2, 0.0]])
    )
    return fit.to_image(torch.from_numpy(load_topology().template.copy()))


def pattern(uv: np.ndarray) -> np.ndarray:
    """A smooth colour pattern, asymmetric in u so mirrored texels are recognisable."""
    u, v = uv[..., 0], uv[..., 1]
    return np.stack([255 * u, 255 * v, 127.5 + 100 * np.sin(2 * np.pi * 2 * v)], axis=-1)


def render_frontal(verts: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) uint8 photo of the pattern painted on the mesh (front-facing triangles only)."""
    topo = load_topology()
    pts = verts[0, :, :2].numpy().astype(np.float64)
    tris = topo.triangles
    a, b, c = (pts[tris[:, k]] for k in range(3))
    cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    front = tris[cross < 0]  # counter-clockwise from outside appears clockwise with y down
    owner, bary, _ = rasterize_uv(np.stack([pts[:, 0] / IMAGE, 1 - pts[:, 1] / IMAGE], axis=1), front, IMAGE)
    uv = (bary[..., None] * topo.uvs[front[owner.clip(0)]]).sum(axis=2)
    image = np.where((owner >= 0)[..., None], pattern(uv), 0.0)
    return torch.from_numpy(image.round().astype(np.uint8)).permute(2, 0, 1)[None].contiguous()


def texel_uv(size: int) -> np.ndarray:
    rows, cols = np.mgrid[0:size, 0:size]
    return np.stack([(cols + 0.5) / size, 1 - (rows + 0.5) / size], axis=-1)


@pytest.fixture(scope="module")
def baker() -> TextureBaker:
    return TextureBaker(load_topology(), SIZE, "cpu", sample_size=SIZE)


@pytest.fixture(scope="module")
def atlas() -> np.ndarray:
    topo = load_topology()
    return rasterize_uv(topo.uvs, topo.triangles, SIZE)[0] >= 0


def noise_image(seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (1, 3, IMAGE, IMAGE), dtype=torch.uint8, generator=generator)


def test_round_trip_recovers_the_painted_pattern(baker):
    verts = project()
    textures, coverage = baker.bake(render_frontal(verts), torch.tensor([0]), verts)
    assert textures.shape == (1, SIZE, SIZE, 3) and textures.dtype == torch.uint8
    # Texels of triangles that clearly face the camera (normal within ~70 degrees of the view).
    topo = load_topology()
    v = verts[0].numpy().astype(np.float64)
    a, b, c = (v[topo.triangles[:, k]] for k in range(3))
    normal = np.cross(b - a, c - a)
    facing = -normal[:, 2] > 0.35 * np.linalg.norm(normal, axis=1)
    owner = rasterize_uv(topo.uvs, topo.triangles, SIZE)[0]
    seen = (owner >= 0) & facing[owner.clip(0)]
    error = np.abs(textures[0].numpy().astype(float) - pattern(texel_uv(SIZE))).max(axis=-1)
    assert np.median(error[seen]) < 2
    assert (error[seen] < 12).mean() > 0.98  # the rest: nose sides the z-buffer calls occluded
    assert coverage.item() > 0.8


def test_turned_face_loses_coverage_and_fills_from_the_mirror(baker, atlas):
    image = noise_image()
    frontal = baker.bake(image, torch.tensor([0]), project())[0][0].numpy().astype(int)
    turned_tex, turned_cov = baker.bake(image, torch.tensor([0]), project(yaw=70))
    turned = turned_tex[0].numpy().astype(int)
    frontal_cov = baker.bake(image, torch.tensor([0]), project())[1]
    assert turned_cov.item() < frontal_cov.item() - 0.2

    def mirror_matches(tex: np.ndarray) -> float:
        """Fraction of the subject's right half (u < 0.5) equal to its mirrored texel."""
        same = np.abs(tex - tex[:, ::-1]).max(axis=-1) <= 1
        same &= (tex != tex[0, 0]).any(axis=-1)  # not mean-filled (hidden on both sides)
        half = atlas & (texel_uv(SIZE)[..., 0] < 0.45)
        return same[half].mean()

    # yaw 70: the nose points at the image's right, so the subject's right cheek is hidden.
    assert mirror_matches(turned) > 0.5
    assert mirror_matches(frontal) < 0.05  # noise is never symmetric by chance


def test_zbuffer_hides_what_the_nose_covers(baker):
    """Coverage equals the front-facing share when nothing overlaps, and drops below it when the
    nose hides part of the far cheek."""
    topo = load_topology()
    owner = rasterize_uv(topo.uvs, topo.triangles, SIZE)[0]
    texels = np.bincount(owner[owner >= 0], minlength=len(topo.triangles))

    def facing_share(verts: torch.Tensor) -> float:
        v = verts[0].numpy().astype(np.float64)
        a, b, c = (v[topo.triangles[:, k]] for k in range(3))
        normal = np.cross(b - a, c - a)
        facing = -normal[:, 2] > MIN_FACING_COS * np.linalg.norm(normal, axis=1)
        return (texels * facing).sum() / texels.sum()

    frontal, turned = project(), project(yaw=45)
    frontal_cov = baker.bake(noise_image(), torch.tensor([0]), frontal)[1].item()
    turned_cov = baker.bake(noise_image(), torch.tensor([0]), turned)[1].item()
    assert frontal_cov == pytest.approx(facing_share(frontal), abs=0.005)
    assert turned_cov < facing_share(turned) - 0.015


def test_hidden_on_both_sides_gets_the_mean_colour(baker, atlas):
    image = render_frontal(project())
    tex = baker.bake(image, torch.tensor([0]), project(pitch=-80))[0][0].numpy()
    background = tex[0, 0]  # beyond the padding: the mean visible colour
    forehead = tex[2 * PADDING_TEXELS + 2, SIZE // 2]  # top of the atlas, seen edge-on from below
    assert atlas[2 * PADDING_TEXELS + 2, SIZE // 2]
    assert np.array_equal(forehead, background)
    frontal = baker.bake(image, torch.tensor([0]), project())[0][0].numpy()
    assert not np.array_equal(frontal[2 * PADDING_TEXELS + 2, SIZE // 2], frontal[0, 0])


def test_padding_copies_the_nearest_atlas_texel(baker, atlas):
    verts = project()
    tex = baker.bake(render_frontal(verts), torch.tensor([0]), verts)[0][0].numpy()
    dist, (near_r, near_c) = distance_transform_edt(~atlas, return_indices=True)
    band = (dist > 0) & (dist <= PADDING_TEXELS)
    assert band.sum() > 1000
    assert np.array_equal(tex[band], tex[near_r[band], near_c[band]])
    beyond = dist > PADDING_TEXELS
    assert (tex[beyond] == tex[0, 0]).all()


def test_batched_faces_match_single_bakes(baker):
    photos = torch.cat([render_frontal(project()), noise_image(1)])
    verts = torch.cat([project(), project(yaw=-30)])
    tex, cov = baker.bake(photos, torch.tensor([1, 0]), verts)
    for k, img in enumerate((1, 0)):
        single_tex, single_cov = baker.bake(photos[img : img + 1], torch.tensor([0]), verts[k : k + 1])
        # Same texels; only float rounding differs (a batch shares one photo-window size).
        assert (tex[k].int() - single_tex[0].int()).abs().max() <= 1
        assert cov[k] == pytest.approx(single_cov.item())
    none_tex, none_cov = baker.bake(photos, torch.zeros(0, dtype=torch.long), verts[:0])
    assert none_tex.shape == (0, SIZE, SIZE, 3) and none_cov.shape == (0,)


def test_upscaled_bake_matches_the_sampled_size():
    """Sampling at 256 and upscaling to 1024 keeps the picture (only interpolation differs)."""
    topo = load_topology()
    verts = project()
    image = render_frontal(verts)
    small = TextureBaker(topo, SIZE, "cpu", sample_size=SIZE).bake(image, torch.tensor([0]), verts)[0]
    big = TextureBaker(topo, 1024, "cpu", sample_size=SIZE).bake(image, torch.tensor([0]), verts)[0]
    assert big.shape == (1, 1024, 1024, 3)
    down = big[0].float().reshape(SIZE, 4, SIZE, 4, 3).mean(dim=(1, 3))
    assert (down - small[0].float()).abs().mean() < 3


def test_rejects_unsupported_sizes():
    with pytest.raises(ValueError):
        TextureBaker(load_topology(), 128)
    with pytest.raises(ValueError):
        TextureBaker(load_topology(), 8192)
