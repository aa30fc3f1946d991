"""atheris (libFuzzer) on the decode boundary: seconds in CI, minutes with RELIABILITY_LONG=1."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import hostile_images as hostile
from tests.figures import record
from tests.serving import ROOT

pytest.importorskip("atheris", reason="atheris is in the test extra")

LONG = os.environ.get("RELIABILITY_LONG") == "1"
SECONDS = 300 if LONG else 10


def seeds(folder: Path) -> None:
    small = hostile.face().resize((64, 80))
    corpus = {
        "jpeg": hostile.encode(small, "JPEG"),
        "progressive": hostile.encode(small, "JPEG", progressive=True),
        "png": hostile.encode(small, "PNG"),
        "webp": hostile.encode(small, "WEBP"),
        "exif6": hostile.oriented(6),
        "png16": hostile.png(8, 8, depth=16),
        "text": hostile.text_chunks_png(2000),
        "cmyk": hostile.encode(small.convert("CMYK"), "JPEG"),
    }
    for name, data in corpus.items():
        (folder / name).write_bytes(data)


@pytest.mark.slow
@pytest.mark.reliability
def test_decode_never_crashes(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    seeds(corpus)
    run = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.decode", str(corpus), f"-max_total_time={SECONDS}",
         "-rss_limit_mb=2048", "-timeout=10", f"-artifact_prefix={tmp_path}/"],
        cwd=ROOT, capture_output=True, text=True, timeout=SECONDS + 120,
    )  # fmt: skip
    output = run.stdout + run.stderr
    done = re.search(r"Done (\d+) runs in (\d+) second", output)
    assert run.returncode == 0 and done, output[-4000:]
    record("fuzz", "decode: inputs tried", int(done.group(1)))
    record("fuzz", "decode: seconds", int(done.group(2)))
