"""Glasses frames in the photo: thin dark lines around the eyes that are not skin.

Why: the bake's other occluder rule compares each side of the face with its mirror point
(bake.py ``occluders``), which finds one side's hair or hand but never a frame, which is on both
sides. Baked, a frame is painted onto the skin and stays there when the head turns or blinks.

How, per face, in an upright crop along the eye line (``CROP`` in units of the distance between the
eye centres, ``PER_UNIT`` pixels per unit, whatever the photo's size: the cost is fixed):

1. Thin dark structure: a greyscale closing (``CLOSING`` wide) minus the luma, relative to the
   closing (a black top-hat): a frame's rim is far darker than the skin either side of it.
2. Presence: a frame's bridge crosses the nose between the eyes, where a face without glasses has
   smooth skin; the top-hat's peak on that strip (``BRIDGE``) decides, with a ramp
   (``PRESENT``), whether the face wears glasses at all. Faces without them are left untouched
   (brow furrows sit above the strip, and the strip's own shadow is broad, not thin).
3. Frame texels: a strong top-hat inside the glasses' zone (the crop), outside the eyes' openings
   (lashes and the lid line are the person's) and the brows, dilated by about one vertex spacing, so
   that no vertex beside a rim keeps its colour.

Measured once on the texture set (bench/texture_quality.py's photos, a scratch script; the test
tests/test_ict_occluders.py holds the outcome, glasses or not): the bridge's relative top-hat is 0.30
(face_001) and 0.80 (walter) with glasses, at most 0.03 without (jesse's side light, lenna,
astronaut, image00021, merge_action). Missed: takeo's faint thin rims (0.03 on a greyscale photo
150 px wide, the face 60 px across), which stay painted, as before. Cost on one CPU thread (scratch
timing, min of 30): about 1.5 ms a face without glasses (the frames are not looked for once the
bridge shows none), 3.8 ms with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from face3d.models.backends.ict.lighting import luma as luma_of
from face3d.models.backends.ict.regions import EYE_A, EYE_B, inside_near
from face3d.models.geometry.ramps import smoothstep

CROP = ((-1.3, 1.3), (-0.5, 0.45))  # (along the eyes, down), in eye distances from their midpoint
PER_UNIT = 64  # crop pixels per eye distance
CLOSING = 7  # crop pixels (~0.11 eye distances, ~7 mm): wider than a rim, narrower than a brow's height
DILATE = 5  # crop pixels: the frame mask grows by 2 (~2 mm, about a vertex spacing) each side
EXCLUDE = 5  # crop pixels the eyes' and brows' masks grow by
BRIDGE = (0.1, (-0.32, 0.08))  # the nose strip: half-width, (top, bottom) in eye distances
PRESENT = (0.1, 0.2)  # the bridge's peak relative top-hat: no glasses below, glasses above
FRAME = (0.1, 0.22)  # relative top-hat of a frame pixel: none below, fully above
# MediaPipe's brows (FACEMESH_LEFT/RIGHT_EYEBROW): upper arc, then the lower one back.
BROW_A = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46)
BROW_B = (300, 293, 334, 296, 336, 285, 295, 282, 283, 276)


def _max_filter(x: Tensor, size: int) -> Tensor:
    """Greyscale dilation by a size x size square, as two 1-D passes (a third of the 2-D pool's time)."""
    x = F.max_pool2d(x, (1, size), 1, (0, size // 2))
    return F.max_pool2d(x, (size, 1), 1, (size // 2, 0))


def glasses_frames(window: Tensor, landmarks: Tensor, at: Tensor) -> tuple[Tensor, Tensor]:
    """(F, V) 0..1 how much of each vertex's photo sample is a glasses frame, and (F,) 0..1 whether
    each face wears glasses.

    window (F, 3, h, w) the photo windows (bake.py ``photo_windows``); landmarks (F, N, 2) and
    at (F, V, 2) MediaPipe landmarks and vertices in the windows' grid coordinates (``grid_sample``,
    align_corners=False)."""
    faces, _, height, width = window.shape
    size = landmarks.new_tensor([width, height])

    def to_pixels(grid: Tensor) -> Tensor:  # grid coordinates -> window pixels (k: pixel k's centre)
        return (grid + 1) * size / 2 - 0.5

    lm = to_pixels(landmarks)
    eye_a, eye_b = lm[:, list(EYE_A)].mean(dim=1), lm[:, list(EYE_B)].mean(dim=1)
    centre = (eye_a + eye_b) / 2
    span = (eye_b - eye_a).norm(dim=-1).clamp_min(1e-3)  # (F,)
    u = (eye_b - eye_a) / span[:, None]
    v = torch.stack([-u[:, 1], u[:, 0]], dim=-1)  # image y points down: v points down the face
    (s0, s1), (t0, t1) = CROP
    cols, rows = round((s1 - s0) * PER_UNIT), round((t1 - t0) * PER_UNIT)
    s = s0 + (torch.arange(cols, dtype=lm.dtype, device=lm.device) + 0.5) / PER_UNIT
    t = t0 + (torch.arange(rows, dtype=lm.dtype, device=lm.device) + 0.5) / PER_UNIT
    st = torch.stack(torch.meshgrid(s, t, indexing="xy"), dim=-1)  # (rows, cols, 2)
    span_ = span[:, None, None, None]
    pixels = centre[:, None, None] + span_ * (st[..., :1] * u[:, None, None] + st[..., 1:] * v[:, None, None])
    grid = (pixels + 0.5) * 2 / size - 1
    luma = F.grid_sample(window, grid, align_corners=False, padding_mode="border")
    luma = luma_of(luma.permute(0, 2, 3, 1)).unsqueeze(1)
    closed = -_max_filter(-_max_filter(luma, CLOSING), CLOSING)
    hat = (closed - luma) / closed.clamp_min(8.0)  # (F, 1, rows, cols) relative darkness
    # A bridge is a bar across the whole strip; a furrow or the nose's side shadow runs down it.
    # The strip is centred on the nose's bridge (landmark 168), which a turned face moves off the
    # eyes' midpoint.
    bridge = (((lm[:, 168] - centre) * u).sum(-1) / span)[:, None]  # (F, 1)
    across = (s[None] - bridge).abs() <= BRIDGE[0]  # (F, cols)
    down = (t >= BRIDGE[1][0]) & (t <= BRIDGE[1][1])  # (rows,)
    strip = torch.where(across[:, None], hat[:, 0], hat.new_tensor(float("inf")))[:, down]
    present = smoothstep(strip.amin(dim=2).amax(dim=1), *PRESENT)  # (F,)
    if not bool(present.any()):  # most faces: no glasses, nothing more to find (one sync)
        return at.new_zeros(at.shape[:2]), present
    # Not frames: the eyes' openings (lashes, lid lines) and the brows, each a little grown.
    flat = pixels.view(faces, -1, 2)
    own = torch.zeros((faces, 1, rows, cols), dtype=lm.dtype, device=lm.device)
    for polygon in (EYE_A, EYE_B, BROW_A, BROW_B):
        inside = inside_near(flat, lm[:, list(polygon)]).to(own)
        own = torch.maximum(own, inside.view(faces, 1, rows, cols))
    own = _max_filter(own, EXCLUDE)
    frame = smoothstep(hat, *FRAME) * (1 - own)
    frame = _max_filter(frame, DILATE)
    # Each vertex reads the mask at its place in the crop (0 outside it).
    d = to_pixels(at) - centre[:, None]
    local = torch.stack([(d * u[:, None]).sum(-1), (d * v[:, None]).sum(-1)], dim=-1) / span[:, None, None]
    lo, hi = local.new_tensor([s0, t0]), local.new_tensor([s1, t1])
    where = (2 * (local - lo) / (hi - lo) - 1)[:, None]  # (F, 1, V, 2)
    on_vertex = F.grid_sample(frame, where, align_corners=False, padding_mode="zeros")[:, 0, 0]
    return on_vertex * present[:, None], present
