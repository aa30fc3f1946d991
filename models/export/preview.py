"""The preview image of a result (``preview.png``): the photo, downscaled, with each face's box,
score and mesh drawn over it, so a person sees at a glance what was found and how the mesh sits."""

from __future__ import annotations

import fpng
import numpy as np
from PIL import Image, ImageDraw

from face3d.models.backends.facemesh.topology import Topology
from face3d.models.backends.ict.export import draw_head
from face3d.models.backends.ict.topology import HeadTopology
from face3d.models.reconstruction import Reconstruction

PREVIEW_MAX_SIDE = 1024


def render_preview(
    image: np.ndarray, rec: Reconstruction, topology: Topology, max_side: int = PREVIEW_MAX_SIDE
) -> bytes:
    """PNG of the photo, downscaled to <= max_side, with each face's mesh wireframe and box drawn on it."""
    height, width = image.shape[:2]
    canvas = Image.fromarray(image)
    scale = min(1.0, max_side / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        canvas = canvas.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    sx, sy = canvas.width / width, canvas.height / height
    draw = ImageDraw.Draw(canvas, "RGBA")  # translucent edges: the face stays visible under its mesh
    if not isinstance(topology, HeadTopology):
        pairs = np.asarray(topology.triangles)[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
        edges = np.unique(np.sort(pairs, axis=1), axis=0)
    stroke = max(1, round(max(canvas.size) / 700))
    for face in rec.faces:
        if isinstance(topology, HeadTopology):  # the fitted head, posed into the photo
            draw_head(draw, face, topology, sx, sy)
        else:
            points = np.asarray(face.landmarks, dtype=np.float64)[:, :2] * (sx, sy)
            for segment in points[edges].reshape(-1, 4).tolist():
                draw.line(segment, fill=(0, 255, 120, 140), width=1)
        x0, y0, x1, y1 = face.bbox
        draw.rectangle((x0 * sx, y0 * sy, x1 * sx, y1 * sy), outline=(255, 210, 0), width=stroke)
        draw.text((x0 * sx + 2, max(0.0, y0 * sy - 12)), f"{face.score:.2f}", fill=(255, 210, 0))
    return fpng.from_ndarray(np.asarray(canvas))
