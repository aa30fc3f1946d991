"""The production front end (models/nets/frontend.py) on CPU, one per landmark model, for the tests
that check detections, landmarks and blendshapes: they run ``FrontEnd.locate``, the path every
backend runs (bucketed as the service runs it), rather than a test-only twin of it."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np
import torch

from face3d.models.nets.detector import pad_images
from face3d.models.nets.frontend import FrontEnd, Located
from face3d.service.config import default_cache_dir


@cache
def front_end(landmark_model: str, extended: bool = True) -> FrontEnd:
    """One eager CPU front end per landmark model, with the service's default buckets;
    ``extended=False``: MediaPipe's graphs as they are, for the tests that compare face counts with
    MediaPipe's own (the full-range fallback and ROI retries find faces MediaPipe does not)."""
    return FrontEnd(cache_dir=default_cache_dir(), landmark_model=landmark_model, extended=extended)


def locate(landmark_model: str, images: Sequence[np.ndarray], extended: bool = True) -> Located:
    """Every face (up to ``max_faces``) of each (H, W, 3) uint8 RGB image, in one batched call."""
    return front_end(landmark_model, extended).locate(images, all_faces=True)


def as_batch(images: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """A padded uint8 batch and its sizes, for tests of the crop geometry on hand-made ROIs."""
    return pad_images([torch.from_numpy(im.copy()).permute(2, 0, 1).contiguous() for im in images])
