"""`face3d reconstruct` and `face3d batch`: the engine over files, without the HTTP service.

Outputs of one photo go to ``OUT/<name>/`` and appear atomically: every file is written into a
hidden temporary folder that is renamed into place only when complete, so a crash never leaves a
half-written result and `batch` can treat an existing folder as finished (resumable).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from face3d.models.export import FORMATS, export_files
from face3d.models.imageio import ImageError, decode_image
from face3d.models.topology import load_topology
from face3d.service.config import check_uv_size

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
DEFAULT_FORMATS = tuple(sorted(FORMATS))


@dataclass
class Item:
    """One photo to process and the folder its results go to."""

    source: Path
    out: Path


def write_atomically(out: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` into ``out`` as one unit: temp folder beside it, then rename."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{uuid.uuid4().hex}"  # mkdir honours the umask (mkdtemp is 0700)
    tmp.mkdir()
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_file_atomically(path: Path, data: bytes) -> None:
    """Write one file through a temporary sibling and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _reconstruct_group(engine, items: Sequence[Item], opts: dict) -> Iterator[tuple[Item, str | None]]:
    """Decode, reconstruct as one batch, export and write each item; yield (item, error or None)."""
    decoded, ready = [], []
    for item in items:
        try:
            data = item.source.read_bytes()
            decoded.append(decode_image(data, max_pixels=opts["max_pixels"]))
            ready.append(item)
        except ImageError as exc:
            yield item, f"{item.source}: {exc}"
        except OSError as exc:
            yield item, f"{item.source}: cannot read file ({exc.strerror or exc})"
    if not ready:
        return
    try:
        recs = engine.reconstruct(decoded, uv_size=opts["uv_size"], all_faces=opts["all_faces"])
    except Exception as exc:  # e.g. out of memory: fail this group, keep the run going
        for item in ready:
            yield item, f"{item.source}: reconstruction failed ({type(exc).__name__}: {exc})"
        return
    topology = load_topology()
    for item, image, rec in zip(ready, decoded, recs, strict=True):
        if not rec.faces:
            yield item, f"{item.source}: no face found"
            continue
        try:
            files = export_files(
                rec, image, topology, set(opts["formats"]), opts["texture_format"], engine.model_info()
            )
            write_atomically(item.out, files)
        except OSError as exc:
            yield item, f"{item.source}: cannot write {item.out} ({exc.strerror or exc})"
            continue
        yield item, None


def _options(settings, uv_size: int | None, formats: Sequence[str] | None, all_faces: bool) -> dict:
    chosen = tuple(formats or DEFAULT_FORMATS)
    unknown = set(chosen) - set(DEFAULT_FORMATS)
    if unknown:
        names = ", ".join(sorted(unknown))
        raise ValueError(f"unknown format(s) {names}; choose from {','.join(DEFAULT_FORMATS)}")
    size = uv_size or settings.uv_size
    check_uv_size(size, settings.max_uv_size, "--uv-size")
    return {
        "uv_size": size,
        "formats": chosen,
        "all_faces": all_faces,
        "texture_format": "png",
        "max_pixels": settings.max_pixels,
    }


def _local_engine(settings):
    """One eager engine on the first configured device, with that device's share of threads."""
    import torch

    from face3d.service.engine_factory import build_engine

    device = settings.worker_devices()[0]
    torch.set_num_threads(settings.threads_per_worker(1))
    return build_engine(settings, device, compile_model=False)


def run_reconstruct(
    photos: Sequence[Path],
    out_dir: Path,
    uv_size: int | None,
    formats: Sequence[str] | None,
    all_faces: bool,
    settings,
) -> int:
    """Reconstruct each photo into ``out_dir/<stem>/``; one line per photo; exit code 1 if any failed."""
    opts = _options(settings, uv_size, formats, all_faces)
    engine = _local_engine(settings)
    items = [Item(Path(p), Path(out_dir) / Path(p).stem) for p in photos]
    clashes = sorted({str(a.source) for a in items for b in items if a is not b and a.out == b.out})
    if clashes:
        raise ValueError(f"these photos would share an output folder (same name): {', '.join(clashes)}")
    failed = 0
    for item, error in _reconstruct_group(engine, items, opts):
        if error:
            failed += 1
            print(f"error: {error}", file=sys.stderr)
        else:
            print(f"{item.source} -> {item.out}")
    return 1 if failed else 0


def _shard(paths: list[Path], index: int, count: int) -> list[Path]:
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard index {index} is outside 0..{count - 1}")
    return [p for i, p in enumerate(paths) if i % count == index]


def run_batch(
    in_dir: Path, out_dir: Path, shard_index: int | None, shard_count: int, settings, group_size: int = 8
) -> int:
    """Reconstruct every photo under ``in_dir`` (this shard's share); skip finished ones; summarise.

    The shard index defaults to ``$JOB_COMPLETION_INDEX`` so an Indexed Kubernetes Job needs no
    per-pod arguments. Failures are listed in ``out_dir/_failed-<shard>.json`` and make the exit code 1.
    """
    from tqdm import tqdm

    in_dir, out_dir = Path(in_dir), Path(out_dir)
    if not in_dir.is_dir():
        raise ValueError(f"input folder {in_dir} does not exist")
    if shard_index is None:
        shard_index = int(os.environ.get("JOB_COMPLETION_INDEX", "0"))
    opts = _options(settings, None, None, False)
    out_abs = out_dir.resolve()
    sources = sorted(
        p
        for p in in_dir.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and out_abs not in p.resolve().parents
    )
    mine = _shard(sources, shard_index, shard_count)
    # The folder keeps the file's whole name: x.jpg and x.png must not share (and overwrite) one.
    items = [Item(p, out_dir / p.relative_to(in_dir)) for p in mine]
    todo = [it for it in items if not it.out.is_dir()]  # folders appear only when complete
    skipped = len(items) - len(todo)
    failures: dict[str, str] = {}
    done = 0
    engine = _local_engine(settings) if todo else None
    with tqdm(total=len(todo), unit="photo", disable=None, file=sys.stderr) as bar:
        for start in range(0, len(todo), group_size):
            for item, error in _reconstruct_group(engine, todo[start : start + group_size], opts):
                if error:
                    failures[str(item.source)] = error
                    tqdm.write(f"error: {error}", file=sys.stderr)
                else:
                    done += 1
                bar.update(1)
    report = out_dir / f"_failed-{shard_index}.json"
    if failures:
        write_file_atomically(report, json.dumps(failures, indent=1).encode())
    else:
        report.unlink(missing_ok=True)
    print(
        f"batch shard {shard_index}/{shard_count}: {done} done, {skipped} already finished, "
        f"{len(failures)} failed, {len(items)} total"
    )
    return 1 if failures else 0
