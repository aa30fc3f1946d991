"""The one smooth ramp every soft mask of the head's texture rises by.

The bake's weights (models/backends/ict/bake.py), the glasses mask (ict/glasses.py) and the person
mode's view blend (ict/person.py) all fade in over a band rather than switch at a threshold, so no
texel changes its source with an edge; they share this cubic so their bands read the same way.
"""

from __future__ import annotations

from torch import Tensor


def smoothstep(x: Tensor, lo: float, hi: float) -> Tensor:
    """0 below ``lo``, 1 above ``hi``, a smooth cubic (3t² - 2t³) between."""
    t = ((x - lo) / (hi - lo)).clamp(0, 1)
    return t * t * (3 - 2 * t)
