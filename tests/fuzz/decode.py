"""atheris fuzz target for the decode boundary: untrusted bytes -> sniff -> decode_image.

Run by tests/test_fuzz_decode.py (seconds in CI, minutes in `make reliability`):

    python -m tests.fuzz.decode CORPUS_DIR -max_total_time=60 -rss_limit_mb=2048 -timeout=10

Any exception other than ImageError (the documented refusal) is a crash; so is a single input that
takes longer than ``-timeout`` seconds or more than ``-rss_limit_mb`` of memory.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from face3d.models.errors import ImageError
    from face3d.models.imageio import decode_image, sniff

MAX_PIXELS = 4_000_000


def one_input(data: bytes) -> None:
    try:
        sniff(data, MAX_PIXELS)
        image = decode_image(data, MAX_PIXELS)
    except ImageError:
        return
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype.name == "uint8"
    assert image.shape[0] * image.shape[1] <= MAX_PIXELS


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
