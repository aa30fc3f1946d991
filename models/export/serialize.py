"""Helpers that every result writer shares (export/files.py, backends/ict/export.py): GLB chunk padding
and JSON numbers rounded to the precision a result promises."""

from __future__ import annotations

from typing import Any

import numpy as np


def pad4(blob: bytes, fill: bytes = b"\x00") -> bytes:
    """``blob`` padded to a multiple of 4 bytes, as glTF wants every chunk and buffer view (the JSON
    chunk pads with spaces, the binary one with zeros)."""
    return blob + fill * (-len(blob) % 4)


def rounded(values: Any, digits: int) -> Any:
    """Numbers (scalar or nested arrays) as plain Python floats rounded to ``digits`` places, for JSON:
    fewer bytes, and no float32 noise such as 0.30000001 in a result."""
    return np.round(np.asarray(values, dtype=np.float64), digits).tolist()
