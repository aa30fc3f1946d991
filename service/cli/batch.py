"""`face3d reconstruct` and `face3d batch`: the pipeline over files, without the HTTP service.

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

from face3d.models.export.document import PersonResult, PersonResultDocument
from face3d.models.pipeline import ALL_FORMATS, PERSON_FORMATS, Pipeline, ReconstructOptions, check_person
from face3d.service.config import Settings
from face3d.service.workers.devices import threads_per_worker, worker_devices

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


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


def _reconstruct_group(
    pipeline: Pipeline, items: Sequence[Item], options: ReconstructOptions
) -> Iterator[tuple[Item, str | None]]:
    """Read, then run the pipeline on the group as one batch and write each item; yield (item, error)."""
    readable: list[tuple[Item, bytes]] = []
    for item in items:
        try:
            readable.append((item, item.source.read_bytes()))
        except OSError as exc:
            yield item, f"{item.source}: cannot read file ({exc.strerror or exc})"
    if not readable:
        return
    try:
        results = pipeline.run([data for _, data in readable], options)
    except Exception as exc:  # e.g. out of memory: fail this group, keep the run going
        for item, _ in readable:
            yield item, f"{item.source}: reconstruction failed ({type(exc).__name__}: {exc})"
        return
    for (item, _), result in zip(readable, results, strict=True):
        if result.error is not None or result.exported is None:
            yield item, f"{item.source}: {result.error}"
            continue
        try:
            write_atomically(item.out, result.exported.files)
        except OSError as exc:
            yield item, f"{item.source}: cannot write {item.out} ({exc.strerror or exc})"
            continue
        yield item, None


def cli_options(
    settings: Settings,
    uv_size: int | None,
    formats: Sequence[str] | None,
    texture: str,
    all_faces: bool,
    neutral: bool = False,
    lighting: str = "remove",
) -> ReconstructOptions:
    """The CLI's options: the pipeline's rules; with no --formats, every format (preview included)."""
    return ReconstructOptions.parse(
        uv_size=uv_size,
        formats=ALL_FORMATS if formats is None else formats,
        texture_format=texture,
        all_faces=all_faces,
        neutral=neutral,
        lighting=lighting,
        default_uv_size=settings.uv_size,
        max_uv_size=settings.max_uv_size,
        uv_size_name="--uv-size",
    )


def _local_pipeline(settings: Settings) -> Pipeline:
    """One eager pipeline on the first configured device, with that device's share of threads."""
    import torch

    from face3d.service.backend_factory import build_backend

    device = worker_devices(settings.devices, settings.cpu_workers)[0]
    torch.set_num_threads(threads_per_worker(settings.torch_threads, 1))
    return Pipeline(build_backend(settings, device, compile_model=False), settings.max_pixels)


def run_reconstruct(
    photos: Sequence[Path],
    out_dir: Path,
    uv_size: int | None,
    formats: Sequence[str] | None,
    all_faces: bool,
    settings: Settings,
    texture: str = "png",
    neutral: bool = False,
    lighting: str = "remove",
) -> int:
    """Reconstruct each photo into ``out_dir/<stem>/``; one line per photo; exit code 1 if any failed."""
    options = cli_options(settings, uv_size, formats, texture, all_faces, neutral, lighting)
    items = [Item(Path(p), Path(out_dir) / Path(p).stem) for p in photos]
    clashes = sorted({str(a.source) for a in items for b in items if a is not b and a.out == b.out})
    if clashes:
        raise ValueError(f"these photos would share an output folder (same name): {', '.join(clashes)}")
    pipeline = _local_pipeline(settings)
    failed = 0
    for item, error in _reconstruct_group(pipeline, items, options):
        if error:
            failed += 1
            print(f"error: {error}", file=sys.stderr)
        else:
            print(f"{item.source} -> {item.out}")
    return 1 if failed else 0


def run_person(
    photos: Sequence[Path],
    out_dir: Path,
    uv_size: int | None,
    formats: Sequence[str] | None,
    settings: Settings,
    texture: str = "png",
    neutral: bool = False,
    lighting: str = "remove",
) -> int:
    """Several photos of one person -> one head's files in ``out_dir`` (each written atomically), one
    line per photo (fitted, no-face or outlier); exit code 1 when no photo shows a face."""
    chosen = PERSON_FORMATS if formats is None else formats  # "all" less the preview (one photo's)
    options = cli_options(settings, uv_size, chosen, texture, False, neutral, lighting)
    check_person(len(photos), options)
    uploads = []
    for photo in map(Path, photos):
        try:
            uploads.append((photo.name, photo.read_bytes()))
        except OSError as exc:
            raise ValueError(f"{photo}: cannot read file ({exc.strerror or exc})") from None
    item = _local_pipeline(settings).run_person(uploads, options)
    if item.error is not None or item.exported is None:
        print(f"error: {item.error}", file=sys.stderr)
        return 1
    for name, data in item.exported.files.items():
        write_file_atomically(Path(out_dir) / name, data)
    document = item.exported.document
    assert isinstance(document, PersonResultDocument)
    print_person(photos, document.person, out_dir)
    return 0


def print_person(photos: Sequence[Path], person: PersonResult, out_dir: Path) -> None:
    """One line per photo (its part in the head), then where the head went: local and --server alike."""
    for photo, entry in zip(photos, person.photos, strict=True):
        face = entry.face
        detail = "" if face is None else f": yaw {face.pose.yaw:.0f}°, fit residual {face.fit_residual_px} px"
        print(f"{photo}: {entry.status}{detail}")
    print(f"one head from {sum(e.status == 'fitted' for e in person.photos)} photos -> {out_dir}")


def _shard(paths: list[Path], index: int, count: int) -> list[Path]:
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard index {index} is outside 0..{count - 1}")
    return [p for i, p in enumerate(paths) if i % count == index]


def run_batch(
    in_dir: Path,
    out_dir: Path,
    shard_index: int | None,
    shard_count: int,
    settings: Settings,
    group_size: int = 8,
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
    options = cli_options(settings, None, None, "png", False)
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
    pipeline = _local_pipeline(settings) if todo else None
    with tqdm(total=len(todo), unit="photo", disable=None, file=sys.stderr) as bar:
        for start in range(0, len(todo), group_size):
            assert pipeline is not None
            for item, error in _reconstruct_group(pipeline, todo[start : start + group_size], options):
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
