"""The preview image of a result (``preview.png``): the photo, downscaled, with each face's box, score
and the marks its backend chose (models/export/mesh.py ``PreviewMarks``: its mesh's wireframe, model
landmarks) drawn over it, so a person sees at a glance what was found and how the mesh sits."""

from __future__ import annotations

from collections.abc import Sequence

import fpng
import numpy as np
from PIL import Image, ImageDraw

from face3d.models.export.mesh import PreviewMarks
from face3d.models.reconstruction import Reconstruction

PREVIEW_MAX_SIDE = 1024


def render_preview(
    image: np.ndarray, rec: Reconstruction, marks: Sequence[PreviewMarks], max_side: int = PREVIEW_MAX_SIDE
) -> bytes:
    """PNG of the photo, downscaled to <= max_side, with each face's marks and box drawn on it."""
    height, width = image.shape[:2]
    canvas = Image.fromarray(image)
    scale = min(1.0, max_side / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        canvas = canvas.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    sx, sy = canvas.width / width, canvas.height / height
    draw = ImageDraw.Draw(canvas, "RGBA")  # translucent edges: the face stays visible under its mesh
    stroke = max(1, round(max(canvas.size) / 700))
    for face, mark in zip(rec.faces, marks, strict=True):
        for segment in (np.asarray(mark.segments, np.float64) * (sx, sy, sx, sy)).tolist():
            draw.line(segment, fill=mark.line_rgba, width=1)
        r = 2
        for x, y in (np.asarray(mark.dots, np.float64)[:, :2] * (sx, sy)).tolist():
            draw.ellipse((x - r, y - r, x + r, y + r), fill=mark.dot_rgba)
        x0, y0, x1, y1 = face.bbox
        draw.rectangle((x0 * sx, y0 * sy, x1 * sx, y1 * sy), outline=(255, 210, 0), width=stroke)
        draw.text((x0 * sx + 2, max(0.0, y0 * sy - 12)), f"{face.score:.2f}", fill=(255, 210, 0))
    return fpng.from_ndarray(np.asarray(canvas))
