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

    python -m bench.texture_quality            # all photos of the set
    python -m bench.texture_quality walter lenna --before HEAD
"""

from __future__ import annotations

import argparse
import importlib.util
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


@torch.inference_mode()
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
    args = parser.parse_args(argv)
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
        image = texture_photo(name) if name in TEXTURE_PHOTOS else photo(name)
        found = backend._front().locate([image], False, StageClock(backend.device))
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
        rows.append((*ratios, graze_old, graze_new, graze_skin, cover_old, cover_new))
        print(
            f"{name:20s} {yaw:5.0f} |              {ratios[0]:6.3f}  {ratios[1]:6.3f} {ratios[2]:5.3f} |"
            f"                {graze_old:6.3f} {graze_new:6.3f} {graze_skin:5.3f} |"
            f"           {cover_old:6.3f} {cover_new:6.3f}"
        )
    table = np.array(rows)
    for label, reduce in (("median", np.median), ("worst", np.max)):
        r = reduce(table, axis=0)
        print(
            f"{label:20s} {'':5s} |              {r[0]:6.3f}  {r[1]:6.3f} {r[2]:5.3f} |"
            f"                {r[3]:6.3f} {r[4]:6.3f} {r[5]:5.3f} |           {r[6]:6.3f} {r[7]:6.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
