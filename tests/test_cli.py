"""The `face3d` command as users run it: a real subprocess, its stdout, stderr and exit code."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from face3d.service.api.auth import verify_token
from face3d.service.cli.main import main, parse_duration
from face3d.service.config import Settings

REPO = Path(__file__).resolve().parents[1]
SECRET = "cli-secret-" * 4


def face3d(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m service.cli ARGS`` (what the console script runs) from the repository root."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FACE3D_")}
    return subprocess.run(
        [sys.executable, "-m", "face3d.service.cli.main", *args],
        cwd=REPO,
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def inline(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``face3d`` run in this process (faster than a subprocess), same environment rules."""
    for key in [k for k in os.environ if k.startswith("FACE3D_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(REPO)

    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        with monkeypatch.context() as mp:
            for key, value in env.items():
                mp.setenv(key, value)
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse usage errors
                code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out, err)

    return run


def assert_one_line_error(proc: subprocess.CompletedProcess[str], code: int, fragment: str) -> None:
    assert proc.returncode == code, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("face3d: error:"), proc.stderr
    assert fragment in lines[0]


def test_token_round_trip() -> None:
    proc = face3d(
        "token", "--sub", "alice", "--scope", "reconstruct", "--scope", "results:read", "--ttl", "2h",
        FACE3D_JWT_SECRET=SECRET,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    token = proc.stdout.strip()
    assert proc.stdout == token + "\n"  # the token alone, so $(face3d token ...) works
    principal = verify_token(token, Settings(jwt_secret=SECRET))
    assert principal.tenant == "alice" and principal.scopes == {"reconstruct", "results:read"}


def test_token_without_a_secret_fails_in_one_line(inline) -> None:
    assert_one_line_error(inline("token", "--sub", "a", "--scope", "reconstruct"), 1, "FACE3D_JWT_SECRET")


def test_token_with_unknown_scope(inline) -> None:
    proc = inline("token", "--sub", "a", "--scope", "root", FACE3D_JWT_SECRET=SECRET)
    assert_one_line_error(proc, 1, "unknown scope")


def test_usage_errors_are_one_line(inline) -> None:
    assert_one_line_error(inline("token", "--scope", "reconstruct"), 2, "--sub")
    assert_one_line_error(inline("token", "--sub", "a", "--scope", "x", "--ttl", "soon"), 2, "duration")
    assert_one_line_error(inline("frobnicate"), 2, "frobnicate")


def test_serve_with_invalid_config_fails_fast() -> None:
    proc = face3d("serve", "--port", "70000", FACE3D_JWT_SECRET=SECRET)
    assert_one_line_error(proc, 1, "port")


def test_models_pull_with_a_bad_wheel(inline, tmp_path: Path) -> None:
    wheel = tmp_path / "mediapipe-0.10.21-cp311-none-any.whl"
    wheel.write_bytes(b"not a zip")
    proc = inline("models", "pull", "--cache-dir", str(tmp_path / "cache"), "--wheel", str(wheel))
    assert_one_line_error(proc, 1, "not a usable mediapipe wheel")
    assert not (tmp_path / "cache" / "mediapipe-0.10.21").exists()


def test_batch_with_a_missing_folder_fails_in_one_line(inline, tmp_path: Path) -> None:
    proc = inline("batch", str(tmp_path / "nope"), str(tmp_path / "out"))
    assert_one_line_error(proc, 1, "")


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("15m", 900), ("1h", 3600), ("1.5h", 5400), ("7d", 604800)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
