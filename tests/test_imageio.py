"""models/imageio.py: header sniffing, full decode of every pixel mode, and rejection of bad input."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from face3d.models.imageio import ALPHA_BACKGROUND, ImageError, ImageInfo, decode_image, sniff
from scripts.photos import photo_bytes

MAX = 40_000_000


def _encode(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _two_tone(width: int = 60, height: int = 30) -> Image.Image:
    """Left half red, right half blue: orientation is readable after any rotation."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 2] = (255, 0, 0)
    pixels[:, width // 2 :] = (0, 0, 255)
    return Image.fromarray(pixels)


def _png_with_size(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height, with a token IDAT: enough for a header check."""

    def chunk(tag: bytes, payload: bytes) -> bytes:
        body = tag + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16))


def test_real_photo_decodes_like_pillow() -> None:
    data = photo_bytes("face_001")
    rgb = decode_image(data, MAX)
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert rgb.dtype == np.uint8 and rgb.flags.c_contiguous
    assert rgb.shape == expected.shape == (960, 960, 3)
    assert np.array_equal(rgb, expected)
    assert sniff(data, MAX) == ImageInfo("JPEG", 960, 960)


@pytest.mark.parametrize(
    ("fmt", "name", "kwargs"), [("PNG", "PNG", {}), ("WEBP", "WEBP", {"lossless": True})]
)
def test_lossless_formats_round_trip_exactly(fmt: str, name: str, kwargs: dict[str, object]) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    data = _encode(Image.fromarray(pixels), fmt, **kwargs)
    assert sniff(data) == ImageInfo(name, 53, 37)
    assert np.array_equal(decode_image(data, MAX), pixels)


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    data = _encode(_two_tone(), "JPEG", quality=95, exif=exif)
    assert sniff(data) == ImageInfo("JPEG", 60, 30)  # header: stored size
    rgb = decode_image(data, MAX)
    assert rgb.shape == (60, 30, 3)  # displayed size: portrait
    top, bottom = rgb[5:25].reshape(-1, 3).mean(0), rgb[35:55].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 60  # the left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_cmyk_jpeg_becomes_rgb() -> None:
    data = _encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95)
    rgb = decode_image(data, MAX)
    assert rgb.shape == (16, 16, 3)
    assert np.abs(rgb.astype(int) - (255, 0, 0)).max() < 8


def test_greyscale_and_bilevel_become_three_equal_channels() -> None:
    grey = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (8, 1))
    rgb = decode_image(_encode(Image.fromarray(grey), "PNG"), MAX)
    assert np.array_equal(rgb, np.repeat(grey[:, :, None], 3, axis=2))
    bilevel = decode_image(_encode(Image.fromarray(grey > 127), "PNG"), MAX)
    assert set(np.unique(bilevel).tolist()) == {0, 255}


def test_palette_png_expands_its_colours() -> None:
    source = _two_tone().convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    rgb = decode_image(_encode(source, "PNG"), MAX)
    assert np.array_equal(rgb, np.asarray(source.convert("RGB")))


def test_transparent_pixels_are_composited_onto_white() -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = (10, 20, 30)
    rgba[:, :2, 3] = 255  # left half opaque, right half fully transparent
    rgba[0, 3, 3] = 128  # one half-transparent pixel
    rgb = decode_image(_encode(Image.fromarray(rgba, "RGBA"), "PNG"), MAX).astype(int)
    assert (rgb[:, :2] == (10, 20, 30)).all()
    assert (rgb[1:, 2:] == ALPHA_BACKGROUND).all()
    assert np.abs(rgb[0, 3] - np.array([10 + 255, 20 + 255, 30 + 255]) / 2).max() <= 1


def test_palette_with_transparent_index_and_la() -> None:
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, 200, 0, 0])
    palette.putpixel((0, 0), 0)
    palette.putpixel((1, 0), 1)
    rgb = decode_image(_encode(palette, "PNG", transparency=0), MAX)
    assert rgb.tolist() == [[[255, 255, 255], [200, 0, 0]]]
    la = Image.fromarray(np.array([[[50, 255], [50, 0]]], np.uint8), "LA")
    assert decode_image(_encode(la, "PNG"), MAX).tolist() == [[[50, 50, 50], [255, 255, 255]]]


def test_sixteen_bit_greyscale_is_scaled_to_eight_bits() -> None:
    values = np.array([[0, 257, 32896, 65535]], np.uint16)
    data = _encode(Image.fromarray(values), "PNG")
    rgb = decode_image(data, MAX)
    assert rgb[..., 0].tolist() == [[0, 1, 128, 255]]
    assert (rgb[..., 0] == rgb[..., 2]).all()


def test_truncated_jpeg_is_invalid_never_half_decoded() -> None:
    data = photo_bytes("face_001")
    truncated = data[: len(data) // 2]
    assert sniff(truncated) == ImageInfo("JPEG", 960, 960)  # the header alone is intact
    with pytest.raises(ImageError) as err:
        decode_image(truncated, MAX)
    assert err.value.kind == "invalid-image"
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("data", [b"", b"hello, this is not an image", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20])
def test_garbage_is_invalid_image(data: bytes) -> None:
    for call in (lambda: sniff(data), lambda: decode_image(data, MAX)):
        with pytest.raises(ImageError) as err:
            call()
        assert err.value.kind == "invalid-image"


@pytest.mark.parametrize(("fmt", "name"), [("GIF", "GIF"), ("BMP", "BMP"), ("TIFF", "TIFF")])
def test_other_image_types_are_unsupported(fmt: str, name: str) -> None:
    data = _encode(_two_tone(), fmt)
    with pytest.raises(ImageError) as err:
        sniff(data)
    assert err.value.kind == "unsupported-type"
    assert name in str(err.value) and "JPEG, PNG or WebP" in str(err.value)


def test_heic_is_named_as_unsupported() -> None:
    header = struct.pack(">I", 24) + b"ftypheic" + b"\x00\x00\x00\x00mif1heic"
    with pytest.raises(ImageError, match="HEIC") as err:
        decode_image(header + b"\x00" * 64, MAX)
    assert err.value.kind == "unsupported-type"


def test_pixel_budget_is_checked_from_the_header() -> None:
    data = _png_with_size(8000, 6000)  # 48 MP claimed, no pixel data behind it
    with pytest.raises(ImageError) as err:
        sniff(data, MAX)
    assert err.value.kind == "too-large" and "48000000" in str(err.value)
    with pytest.raises(ImageError) as err:
        decode_image(data, MAX)
    assert err.value.kind == "too-large"
    assert sniff(data, 50_000_000) == ImageInfo("PNG", 8000, 6000)


def test_decompression_bomb_is_too_large_even_without_a_budget() -> None:
    with pytest.raises(ImageError) as err:
        sniff(_png_with_size(100_000, 100_000))
    assert err.value.kind == "too-large"
