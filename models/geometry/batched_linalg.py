"""Small batched linear algebra for the morphable-model fit (models/backends/ict/fit.py): 3x3 inverses,
rotation vectors, symmetric products and a few conjugate-gradient steps, over a leading face axis.

Written out where torch's general routines were slower at these sizes on a CPU: a LAPACK call per
batch of 3x3 inverses, and batched GEMM for a matrix times a single column.
"""

from __future__ import annotations

import torch
from torch import Tensor


def cross_matrix(p: Tensor) -> Tensor:
    """(..., 3) -> (..., 3, 3) with ``[p]× v = p × v``."""
    zero = torch.zeros_like(p[..., 0])
    x, y, z = p.unbind(-1)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).view(*p.shape, 3)


def inv3(a: Tensor) -> Tensor:
    """Batched 3x3 inverse by cofactors (no LAPACK call: those cost milliseconds on a busy CPU)."""
    r0, r1, r2 = a.unbind(-2)
    c0, c1, c2 = torch.linalg.cross(r1, r2), torch.linalg.cross(r2, r0), torch.linalg.cross(r0, r1)
    det = (r0 * c0).sum(-1)
    return torch.stack([c0, c1, c2], dim=-1) / det[..., None, None]


def rodrigues(omega: Tensor) -> Tensor:
    """(F, 3) rotation vectors -> (F, 3, 3) rotations (series near zero)."""
    theta2 = (omega * omega).sum(-1)
    theta = theta2.sqrt()
    small = theta2 < 1e-8
    safe = torch.where(small, torch.ones_like(theta), theta)
    a = torch.where(small, 1 - theta2 / 6, torch.sin(safe) / safe)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(safe)) / (safe * safe))
    k = cross_matrix(omega)
    eye = torch.eye(3, dtype=omega.dtype, device=omega.device)
    return eye + a[:, None, None] * k + b[:, None, None] * (k @ k)


def symv(m: Tensor, v: Tensor) -> Tensor:
    """Batched symmetric matrix (F, C, C) times vectors (F, C), as ``vᵀ m``: on CPU this layout is
    ~8x faster than ``m @ v[..., None]`` (which takes a slow batched-GEMM path for one column)."""
    return (v[:, None, :] @ m)[:, 0]


def pcg(a: Tensor, pre: Tensor, b: Tensor, x: Tensor, steps: int) -> Tensor:
    """Batched preconditioned conjugate gradients for ``a x = b`` (F, C, C), ``steps`` steps from x."""

    r = b - symv(a, x)
    zr = symv(pre, r)
    p, rz = zr, (r * zr).sum(1, keepdim=True)
    for _ in range(steps):
        ap = symv(a, p)
        alpha = rz / (p * ap).sum(1, keepdim=True).clamp_min(1e-30)
        x = x + alpha * p
        r = r - alpha * ap
        zr = symv(pre, r)
        rz_new = (r * zr).sum(1, keepdim=True)
        p = zr + rz_new / rz.clamp_min(1e-30) * p
        rz = rz_new
    return x
