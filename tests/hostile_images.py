"""Hostile image files, built in memory: bombs, odd modes, rotations, animations, polyglots, scans.

Shared by tests/test_hostile_images.py (over HTTP) and tests/test_fuzz_decode.py (seeds).
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import numpy as np
from PIL import Image

from scripts.photos import photo_bytes

# ImageOps.exif_transpose's operation per EXIF orientation, and the inverse that stores an upright
# photo so that applying the orientation gives it back.
_STORE = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def face() -> Image.Image:
    """The astronaut, cropped to a portrait (400x512) so that rotations change the size."""
    return Image.open(io.BytesIO(photo_bytes("astronaut"))).convert("RGB").crop((60, 0, 460, 512))


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return buf.getvalue()


def oriented(orientation: int) -> bytes:
    """A JPEG whose pixels are stored so that EXIF ``orientation`` turns them into ``face()``."""
    upright = face()
    op = _STORE[orientation]
    stored = upright if op is None else upright.transpose(op)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, "JPEG", quality=90, exif=exif.tobytes())


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png(width: int, height: int, rows: bytes | None = None, depth: int = 8, color: int = 2,
        extra: list[bytes] | None = None) -> bytes:  # fmt: skip
    """A PNG written by hand: any declared size, bit depth, chunks before the image data."""
    channels = {0: 1, 2: 3, 6: 4}[color]
    if rows is None:
        row = b"\x00" + bytes(width * channels * depth // 8)
        compressor = zlib.compressobj(9)
        packed = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    else:
        packed = zlib.compress(rows, 9)
    header = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    chunks = [_chunk(b"IHDR", header), *(extra or []), _chunk(b"IDAT", packed), _chunk(b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def bomb_png(width: int, height: int) -> bytes:
    """A PNG whose image data inflates to ``height x (1 + 3 width)`` zero bytes (7.5 GB for 50000²)
    but is built in milliseconds: one flushed deflate segment of 1 MiB of zeros, repeated. (Its
    checksum is wrong: a decoder that got that far would already have lost.)"""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    final = zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    count = -(-height * (1 + 3 * width) // (1 << 20))
    idat = b"\x78\xda" + segment * count + final + b"\x00\x00\x00\x01"
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunks = [_chunk(b"IHDR", header), _chunk(b"IDAT", idat), _chunk(b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def small_face() -> bytes:
    """A 200x256 JPEG of the face (about 12 KB): for load tests, where upload bytes are client CPU."""
    return encode(face().resize((200, 256)), "JPEG", quality=85)


def png16() -> bytes:
    """The face as a 16-bit-per-channel RGB PNG."""
    pixels = np.asarray(face()).astype(">u2") * 257
    rows = b"".join(b"\x00" + pixels[y].tobytes() for y in range(pixels.shape[0]))
    return png(pixels.shape[1], pixels.shape[0], rows, depth=16)


def text_chunks_png(total_bytes: int, per_chunk: int = 0) -> bytes:
    """A small PNG carrying ``total_bytes`` of tEXt chunks of ``per_chunk`` payload bytes each."""
    payload = b"k\x00" + b"v" * per_chunk
    one = _chunk(b"tEXt", payload)
    return png(8, 8, extra=[one] * (total_bytes // len(one)))


def iccp_bomb() -> bytes:
    """An iCCP chunk that inflates to 200 MB (Pillow's text/profile limits must stop it)."""
    compressor = zlib.compressobj(9)
    packed = b"".join(compressor.compress(bytes(1 << 20)) for _ in range(200)) + compressor.flush()
    return png(64, 64, extra=[_chunk(b"iCCP", b"icc\x00\x00" + packed)])


def cmyk_jpeg() -> bytes:
    return encode(face().convert("CMYK"), "JPEG", quality=90)


def ycck_jpeg() -> bytes:
    """CMYK JPEG relabelled YCCK (Adobe APP14 transform 2): decoders must cope or refuse cleanly."""
    data = bytearray(cmyk_jpeg())
    at = data.find(b"Adobe")
    if at < 0:  # Pillow wrote no Adobe marker: add one right after SOI
        marker = b"\xff\xee" + struct.pack(">H", 14) + b"Adobe" + b"\x00\x64\x00\x00\x00\x00\x02"
        return bytes(data[:2] + marker + data[2:])
    data[at + 11] = 2
    return bytes(data)


def animated(fmt: str) -> bytes:
    first = face()
    second = first.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    options: dict[str, object] = {"save_all": True, "append_images": [second], "duration": 100, "loop": 0}
    if fmt == "GIF":
        first, options["append_images"] = first.convert("P"), [second.convert("P")]
    return encode(first, fmt, **options)


def many_scans(extra_scans: int) -> bytes:
    """A progressive JPEG with its last scan repeated ``extra_scans`` more times before EOI."""
    data = encode(face(), "JPEG", progressive=True, quality=90)
    last = data.rfind(b"\xff\xda")
    scan = data[last:-2]  # the last SOS header and its entropy-coded data, without EOI
    return data[:-2] + scan * extra_scans + b"\xff\xd9"


def line(width: int, height: int) -> bytes:
    return encode(Image.new("RGB", (width, height), (200, 160, 140)), "PNG")


def flat_jpeg(width: int, height: int) -> bytes:
    return encode(Image.new("RGB", (width, height), (128, 100, 90)), "JPEG", quality=50)


def zip_polyglot() -> bytes:
    """A valid JPEG that is also a valid zip (zip readers look from the end)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("payload.html", "<script>alert(1)</script>")
    return encode(face(), "JPEG") + buf.getvalue()


def html_polyglot() -> bytes:
    return encode(face(), "PNG") + b"<html><script>alert(document.cookie)</script></html>"


def pdf_then_jpeg() -> bytes:
    return b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + encode(face(), "JPEG")


def gif_disguised_as_jpeg() -> bytes:
    return animated("GIF")
