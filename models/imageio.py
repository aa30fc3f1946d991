"""Untrusted image bytes -> RGB uint8 array, with errors the service can map to problem types.

Two entry points with one rule set:

* ``sniff`` parses only the header (no pixel decode), so the API process can reject a wrong type or
  an oversized image in microseconds before a job ever reaches a worker.
* ``decode_image`` does the full decode in the worker / CLI and normalises every pixel mode that
  JPEG, PNG and WebP can produce to plain RGB, with the EXIF orientation applied so that image
  coordinates in results match what people see in a viewer.

Only the JPEG (and its multi-picture variant MPO), PNG and WebP Pillow plugins are ever asked to
parse input: exotic decoders are attack surface a face service has no use for. Truncated files
are rejected (``ImageFile.LOAD_TRUNCATED_IMAGES`` stays off) rather than returned as a half-grey
picture that would reconstruct a plausible-looking but wrong face.

Cheap structural limits run before Pillow sees the bytes, because some valid-looking files cost
far more to parse than their size suggests: a progressive JPEG with thousands of scans makes the
decoder pass over every coefficient once per scan, and a PNG of a million tiny chunks (text, or
empty image-data chunks) runs Pillow's chunk loop in Python a million times. Error messages are
our own words: the decoder's text is never passed on.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from face3d.models.errors import ImageError

__all__ = ["ImageError", "ImageInfo", "decode_image", "sniff"]


# Pillow plugins allowed to parse input; the JPEG one also opens MPO (multi-picture JPEG from phones).
_PLUGINS = ["JPEG", "PNG", "WEBP"]
# Pillow format name -> reported format.
_FORMATS = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "WEBP": "WEBP"}
SUPPORTED = "JPEG, PNG or WebP"

# Background for transparent pixels: white, as a browser or viewer shows a cut-out portrait on a
# page. The colour hidden under alpha = 0 is arbitrary (often black or junk) and must not reach
# the texture.
ALPHA_BACKGROUND = (255, 255, 255)

# Every exception Pillow's three decoders are known to raise on malformed input.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error)

MAX_JPEG_SCANS = 100
"""Start-of-scan markers allowed in a JPEG: baseline has 1 (3 for non-interleaved), progressive
encoders write about 10, a phone's multi-picture file a few dozen."""
MAX_JPEG_SCAN_PIXELS = 400_000_000
"""Scans x pixels allowed: the decoder passes over every coefficient once per scan, so this bounds
its work (ten scans of a 40-megapixel photo)."""
MAX_PNG_CHUNKS = 20_000
"""Chunks allowed in a PNG: a 20 MB file in 8 KB image-data chunks has 2,500."""
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class ImageInfo:
    """What the header says: format ("JPEG" | "PNG" | "WEBP") and stored size (before EXIF rotation)."""

    format: str
    width: int
    height: int


def _foreign_format(data: bytes) -> str | None:
    """Name a common image type we refuse, so its sender gets 'unsupported' rather than 'invalid'."""
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:2] == b"BM":
        return "BMP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if data[4:8] == b"ftyp":  # ISO-BMFF: iPhone HEIC, AVIF
        brand = data[8:12]
        return "AVIF" if brand.startswith(b"avi") else "HEIC/HEIF"
    if data[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n" or data[:4] == b"\xff\x4f\xff\x51":
        return "JPEG 2000"
    return None


def _check_structure(data: bytes) -> None:
    """Refuse files whose structure would make decoding cost far more than their size (see above)."""
    if data[:8] == _PNG_SIGNATURE:
        offset, chunks = 8, 0
        while offset + 8 <= len(data):
            (length,) = struct.unpack_from(">I", data, offset)
            chunks += 1
            if chunks > MAX_PNG_CHUNKS:
                raise ImageError("invalid-image", f"the PNG has more than {MAX_PNG_CHUNKS} chunks")
            if data[offset + 4 : offset + 8] == b"IEND":
                break
            offset += 12 + length


def _open(data: bytes, max_pixels: int | None) -> Image.Image:
    """Open the header with the allowed plugins only and enforce the pixel budget."""
    _check_structure(data)
    try:
        with warnings.catch_warnings():
            # Our own max_pixels check below is the limit that counts; Pillow's warning would only
            # add noise for images we accept (or reject anyway).
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=_PLUGINS)
    except Image.DecompressionBombError:
        raise ImageError("too-large", "image is too large to decode safely") from None
    except UnidentifiedImageError:
        foreign = _foreign_format(data)
        if foreign is not None:
            raise ImageError(
                "unsupported-type", f"{foreign} images are not supported; send {SUPPORTED}"
            ) from None
        raise ImageError("invalid-image", f"data is not a readable image (expected {SUPPORTED})") from None
    except _DECODE_ERRORS:
        raise ImageError("invalid-image", "the image header is corrupt") from None
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageError("invalid-image", f"image has an empty size {width}x{height}")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(
            "too-large", f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}"
        )
    if data[:2] == b"\xff\xd8":
        # 0xFF 0xDA only occurs as a marker: inside entropy-coded data every 0xFF is followed by 0x00.
        scans = data.count(b"\xff\xda")
        if scans > MAX_JPEG_SCANS or scans * width * height > MAX_JPEG_SCAN_PIXELS:
            image.close()
            raise ImageError("invalid-image", f"the JPEG has too many scans ({scans}) for its size")
    return image


def sniff(data: bytes, max_pixels: int | None = None) -> ImageInfo:
    """Format and size from the header alone; raises ImageError for a wrong type or too many pixels."""
    with _open(data, max_pixels) as image:
        return ImageInfo(format=_FORMATS[image.format or ""], width=image.width, height=image.height)


def _to_rgb(image: Image.Image) -> np.ndarray:
    """Any pixel mode JPEG/PNG/WebP decode to -> (H, W, 3) uint8 RGB."""
    mode = image.mode
    if mode.startswith("I"):  # 16-bit greyscale PNG ("I;16", "I;16B") or its 32-bit "I" container
        values = np.asarray(image).astype(np.int64).clip(0, 65535)
        grey = ((values * 255 + 32767) // 65535).clip(0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(image if mode == "RGB" else image.convert("RGB"))


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Full decode to a C-contiguous (H, W, 3) uint8 RGB array, EXIF orientation applied.

    Alpha is composited onto white (see ``ALPHA_BACKGROUND``); 16-bit greyscale is scaled to 8 bit;
    CMYK, palette and greyscale images become RGB; animated WebP yields its first frame.
    """
    with _open(data, max_pixels) as image:
        try:
            ImageOps.exif_transpose(image, in_place=True)  # loads the pixels; no copy when upright
            rgb = _to_rgb(image)
        except Image.DecompressionBombError:
            raise ImageError("too-large", "image is too large to decode safely") from None
        except _DECODE_ERRORS:
            raise ImageError("invalid-image", "the image data is corrupt or truncated") from None
    return np.ascontiguousarray(rgb)
