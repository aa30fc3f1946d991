"""Texture quality of the ``ict`` bake on the texture photo set (scripts/texture_photos.py): per photo,
the left/right cheek brightness ratio of the face tile and the share of the face tile taken from
grazing views, for the bake at a git revision (``--before``, default a2fc32b: the bake before
issue 22, whose 2-tuple ``bake`` it expects; HEAD holds a checkpoint of the issue-22 bake) and the
working tree's (with ``lighting=remove`` and ``keep``), on the same fitted head.

* cheek ratio: mean luma of the face tile's texels on the left cheek over the right's (the larger
  over the smaller, 1.0 = even; scripts/texture_photos.py ``cheek_ratio``).
* coverage: the face tile's mean photo weight (result.json's ``coverage``).
* grazing share: the face tile's mean of w·[n·v < 0.3] + (1 - w)·w_m·[n·v of the mirror point < 0.3],
  the share of its colour taken from photo pixels that saw the skin at grazing angles. ``skin``: the
  same over the face's core only (``VertexSources.core``: the face's skin; outside it, on temples and
  scalp, the bake takes hair seen down to n·v 0.2, as the bake before issue 22 did everywhere).

Per photo it prints the yaw of the fitted head (the pipeline's pose, degrees, positive: turned to
its right), then the median and worst over the set and whether the cheek ratio with
``lighting=remove`` meets issue 22's targets (median <= 1.08, worst <= 1.25). A photo without a face
found is reported and left out of the summary. On the whole set the results go to
bench/results/texture-quality.json (``--out`` for another file).

    python -m bench.texture_quality            # all photos of the set -> bench/results/
    python -m bench.texture_quality walter lenna --before HEAD
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from face3d.models.backends import BackendConfig, create_backend
from face3d.models.backends.ict.bake import HeadBaker
from face3d.models.nets.frontend import StageClock
from face3d.service.config import default_cache_dir
from scripts.photos import photo
from scripts.texture_photos import TEXTURE_PHOTOS, cheek_ratio, cheek_texels, texture_photo

ROOT = Path(__file__).resolve().parents[1]
SIZE = 512  # atlas texels per side, sampled and measured at this size
GRAZING = 0.3
RESULTS = ROOT / "bench" / "results" / "texture-quality.json"
# cheek ratio with lighting=remove, over the set: median and worst (issue 22)
TARGETS = {"median": 1.08, "worst": 1.25}


def committed_baker_module(revision: str = "HEAD"):
    """models/backends/ict/bake.py at a git ``revision``, imported under another name."""
    text = subprocess.run(
        ["git", "show", f"{revision}:models/backends/ict/bake.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "bake_before.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("bake_before", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]  # dataclasses look their module up
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def grazing_share(
    baker: HeadBaker, weight: torch.Tensor, facing: torch.Tensor, within: torch.Tensor | None = None
) -> float:
    """The face tile's share of colour from grazing photo samples; ``within`` (F, V) 0..1: of those
    vertices only (the share of their part of the tile)."""
    mirror_w, mirror_f = weight.index_select(1, baker._mirror), facing.index_select(1, baker._mirror)
    grazing = weight * (facing < GRAZING) + (1 - weight) * mirror_w * (mirror_f < GRAZING)
    if within is None:
        return float((grazing @ baker._tile_share)[0])
    return float(
        ((grazing * within) @ baker._tile_share)[0] / (within @ baker._tile_share)[0].clamp_min(1e-6)
    )


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def _working_tree() -> dict[str, str | bool]:
    """Which bake "after" is: HEAD, and whether the working tree's bake.py differs from it."""
    bake = ROOT / "models" / "backends" / "ict" / "bake.py"
    return {
        "head": _git("rev-parse", "HEAD"),
        "bake_py_modified": bool(_git("status", "--porcelain", "--", str(bake))),
        "bake_py_sha256": hashlib.sha256(bake.read_bytes()).hexdigest(),
    }


@torch.inference_mode()
def measure(backend, old, new, left, right, name: str) -> dict:
    """One photo's row: yaw (the fitted pose's, degrees), cheek ratios, grazing shares, coverages."""
    image = texture_photo(name) if name in TEXTURE_PHOTOS else photo(name)
    found = backend._front().locate([image], False, StageClock(backend.device))
    if len(found.face_image) == 0:
        return {"photo": name, "error": "no face found"}
    fitted = backend._fit(found)
    posed, landmarks = fitted.pose.to_image(fitted.vertices), fitted.landmarks
    yaw = float(fitted.pose.euler_degrees()[0, 0])
    call = (found.batch, found.sizes, found.face_image, posed, landmarks)
    baked = old.bake(*call)  # (textures, coverage), and the lighting since issue 22
    tex_old, cover_old = baked[0][0].numpy(), float(baked[1][0])
    tex_remove, cover_new = (t[0].numpy() for t in new.bake(*call, "remove")[:2])
    tex_keep = new.bake(*call, "keep")[0][0].numpy()
    sizes = found.sizes[found.face_image]
    _, facing = backend.depth(posed.float(), sizes[:, 0].float(), sizes[:, 1].float())
    if hasattr(old, "vertex_sources"):  # a revision since issue 22
        earlier = old.vertex_sources(*call)
        graze_old = grazing_share(old, earlier.weight, earlier.facing)
    else:
        graze_old = grazing_share(old, old.vertex_weights(posed.float(), sizes, landmarks), facing)
    src = new.vertex_sources(*call, "remove")
    graze_new = grazing_share(new, src.weight, src.facing)
    graze_skin = grazing_share(new, src.weight, src.facing, (src.core >= 1).float())
    ratios = [cheek_ratio(t, left, right) for t in (tex_old, tex_remove, tex_keep)]
    return {
        "photo": name,
        "yaw": round(yaw, 1),
        "cheek_ratio": {"before": ratios[0], "remove": ratios[1], "keep": ratios[2]},
        "grazing_share": {"before": graze_old, "after": graze_new, "after_skin": graze_skin},
        "coverage": {"before": cover_old, "after": cover_new},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("photos", nargs="*", default=list(TEXTURE_PHOTOS))
    parser.add_argument(
        "--before",
        default="a2fc32b",
        help="git revision of the bake to compare with (a2fc32b: before issue 22)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help=f"JSON results (default on the whole set: {RESULTS})"
    )
    args = parser.parse_args(argv)
    out = args.out or (RESULTS if args.photos == list(TEXTURE_PHOTOS) else None)
    backend = create_backend("ict", BackendConfig(cache_dir=default_cache_dir(), buckets=(1,)))
    backend.load("cpu")
    before = committed_baker_module(args.before)
    old = before.HeadBaker(backend.topology_, backend.fill, backend.depth, SIZE, SIZE)
    new = HeadBaker(backend.topology_, backend.fill, backend.depth, SIZE, SIZE)
    left, right = cheek_texels(new)
    rows = []
    print(
        f"{'photo':20s} {'yaw':>5s} | cheek ratio: before  remove  keep | grazing share: before  after  skin"
        " | coverage: before  after"
    )
    for name in args.photos:
        row = measure(backend, old, new, left, right, name)
        rows.append(row)
        if "error" in row:
            print(f"{name:20s} {row['error']}")
            continue
        c, g, v = row["cheek_ratio"], row["grazing_share"], row["coverage"]
        print(
            f"{name:20s} {row['yaw']:5.0f} |              {c['before']:6.3f}  {c['remove']:6.3f}"
            f" {c['keep']:5.3f} |                {g['before']:6.3f} {g['after']:6.3f}"
            f" {g['after_skin']:5.3f} |           {v['before']:6.3f} {v['after']:6.3f}"
        )
    measured = [r for r in rows if "error" not in r]
    table = np.array(
        [
            [r["cheek_ratio"][k] for k in ("before", "remove", "keep")]
            + [r["grazing_share"][k] for k in ("before", "after", "after_skin")]
            + [r["coverage"][k] for k in ("before", "after")]
            for r in measured
        ]
    ).reshape(-1, 8)
    summary = {}
    for label, reduce in (("median", np.median), ("worst", np.max)):
        r = reduce(table, axis=0) if len(table) else np.full(8, np.nan)
        summary[label] = {
            "cheek_ratio": {"before": r[0], "remove": r[1], "keep": r[2]},
            "grazing_share": {"before": r[3], "after": r[4], "after_skin": r[5]},
            "coverage": {"before": r[6], "after": r[7]},
        }
        print(
            f"{label:20s} {'':5s} |              {r[0]:6.3f}  {r[1]:6.3f} {r[2]:5.3f} |"
            f"                {r[3]:6.3f} {r[4]:6.3f} {r[5]:5.3f} |           {r[6]:6.3f} {r[7]:6.3f}"
        )
    targets = {}
    for label, bound in TARGETS.items():
        value = summary[label]["cheek_ratio"]["remove"]
        targets[label] = {"remove": value, "bound": bound, "met": bool(value <= bound)}
        print(
            f"{label} cheek ratio with lighting=remove: {value:.3f} (target <= {bound}: "
            f"{'met' if value <= bound else 'NOT met'})"
        )
    failed = [r["photo"] for r in rows if "error" in r]
    if failed:
        print(f"no face found: {', '.join(failed)}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        result = {
            "before": {"revision": args.before, "commit": _git("rev-parse", args.before)},
            "after": _working_tree(),
            "atlas": SIZE,
            "grazing_below": GRAZING,
            "photos": rows,
            "summary": summary,
            "targets": targets,
        }
        out.write_text(json.dumps(result, indent=1, default=float) + "\n")
        print(f"-> {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
