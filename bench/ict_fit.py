"""Benchmark of the ICT head fit (models/backends/ict/fit.py): milliseconds per face, batched.

Landmarks are synthesised from random ICT heads (identity ~ N(0, 1), sparse expressions in [0, 1],
yaw/pitch/roll within ±35/20/20 degrees, 6-15 px per cm, 0.5 px noise), then fitted; prints the
median and p90 time per face with and without the dense vertices, and the fit's accuracy.

    python -m bench.ict_fit                       # CPU, batch 8, 2 threads
    python -m bench.ict_fit --device cuda --batch 64
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from face3d.models.backends.ict.fit import IctFitter
from face3d.models.backends.ict.model import load_ict_model, load_mediapipe_correspondence
from face3d.models.geometry.pose import PoseFit


def random_faces(fitter: IctFitter, faces: int, noise_px: float, seed: int = 0):
    """(identity, expression, pose, landmarks) of ``faces`` random heads."""
    gen = torch.Generator().manual_seed(seed)
    identity = torch.randn(faces, fitter.n_identity, generator=gen)
    on = torch.rand(faces, fitter.n_expression, generator=gen) < 0.15
    expression = torch.rand(faces, fitter.n_expression, generator=gen) * on
    angles = (torch.rand(faces, 3, generator=gen) * 2 - 1) * torch.tensor([35.0, 20.0, 20.0]) * math.pi / 180
    scale = 6 + 9 * torch.rand(faces, generator=gen)
    shift = torch.rand(faces, 3, generator=gen) * torch.tensor([200.0, -200.0, 100.0]) + torch.tensor(
        [200, -200, -50]
    )
    pose = PoseFit(rotation=euler_rotation(angles), scale=scale, translation_cam=shift)
    on_device = PoseFit(*(x.to(fitter.device) for x in (pose.rotation, pose.scale, pose.translation_cam)))
    lm = fitter.landmarks(identity.to(fitter.device), expression.to(fitter.device), on_device).cpu()
    lm = lm + noise_px * torch.randn(lm.shape, generator=gen)
    return identity, expression, pose, lm


def euler_rotation(angles: torch.Tensor) -> torch.Tensor:
    """(F, 3) yaw, pitch, roll (radians) -> R = Ry(yaw) Rx(pitch) Rz(roll), as models/geometry/pose.py."""
    c, s = angles.cos(), angles.sin()
    one, zero = torch.ones_like(c[:, 0]), torch.zeros_like(c[:, 0])
    ry = torch.stack([c[:, 0], zero, s[:, 0], zero, one, zero, -s[:, 0], zero, c[:, 0]], 1).view(-1, 3, 3)
    rx = torch.stack([one, zero, zero, zero, c[:, 1], -s[:, 1], zero, s[:, 1], c[:, 1]], 1).view(-1, 3, 3)
    rz = torch.stack([c[:, 2], -s[:, 2], zero, s[:, 2], c[:, 2], zero, zero, zero, one], 1).view(-1, 3, 3)
    return ry @ rx @ rz


def timed(fn, runs: int, device: torch.device) -> list[float]:
    for _ in range(3):
        fn()
    out = []
    for _ in range(runs):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--iterations", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    start = time.perf_counter()
    fitter = IctFitter(load_ict_model(), load_mediapipe_correspondence(), device=device)
    print(f"load + build: {time.perf_counter() - start:.2f} s ({device}, {args.threads} threads)")
    identity, expression, pose, lm = random_faces(fitter, args.batch, noise_px=0.5)
    lm = lm.to(device)
    for label, dense in (("fit + vertices", True), ("fit only", False)):
        times = timed(
            lambda d=dense: fitter.fit(lm, iterations=args.iterations, with_vertices=d), args.runs, device
        )
        per_face = sorted(t * 1000 / args.batch for t in times)
        print(f"{label:15s} batch {args.batch}: {statistics.median(per_face):.2f} ms/face median, "
              f"{per_face[int(0.9 * len(per_face))]:.2f} p90, {per_face[0]:.2f} min")  # fmt: skip
    fit = fitter.fit(lm, iterations=args.iterations)
    narrow = fitter.model.narrow_face_vertices
    truth = fitter.vertices(identity.to(device), expression.to(device))[:, :narrow]
    got = fit.vertices[:, :narrow]
    posed = (fit.pose.to_image(got) - pose.to_image(truth.cpu()).to(device)).norm(dim=-1) / pose.scale.to(
        device
    )[:, None]
    print(f"narrow-face vertex error: model space {(got - truth).norm(dim=-1).mean() * 10:.2f} mm, "
          f"posed {posed.mean() * 10:.2f} mm; residual {fit.residual_px.mean():.2f} px")  # fmt: skip


if __name__ == "__main__":
    main()
