"""The fit's hand-written batched linear algebra against torch.linalg on seeded random batches."""

from __future__ import annotations

import torch

from face3d.models.geometry.batched_linalg import cross_matrix, inv3, pcg, rodrigues, symv


def test_cross_matrix_is_the_cross_product() -> None:
    generator = torch.Generator().manual_seed(0)
    p, v = torch.randn(2, 5, 3, dtype=torch.float64, generator=generator)
    torch.testing.assert_close((cross_matrix(p) @ v[..., None])[..., 0], torch.linalg.cross(p, v))


def test_inv3_matches_linalg_inv() -> None:
    generator = torch.Generator().manual_seed(0)
    eye = torch.eye(3, dtype=torch.float64)
    a = torch.randn(16, 3, 3, dtype=torch.float64, generator=generator) + 3 * eye
    torch.testing.assert_close(inv3(a), torch.linalg.inv(a))


def test_rodrigues_is_a_rotation_by_the_vector_norm() -> None:
    # Angles below π: the trace only recovers angles in [0, π] (a larger one reads as 2π minus it).
    generator = torch.Generator().manual_seed(0)
    axes = torch.nn.functional.normalize(torch.randn(6, 3, dtype=torch.float64, generator=generator), dim=1)
    angles = torch.linspace(0.1, 3.0, 6, dtype=torch.float64)
    omega = torch.cat([axes * angles[:, None], torch.full((1, 3), 1e-6, dtype=torch.float64)])
    r = rodrigues(omega)
    eye = torch.eye(3, dtype=torch.float64).expand_as(r)
    torch.testing.assert_close(r.transpose(1, 2) @ r, eye)
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(7, dtype=torch.float64))
    torch.testing.assert_close((r @ omega[..., None])[..., 0], omega)  # the axis stays put
    angle = torch.arccos(((r.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1))
    torch.testing.assert_close(angle[:6], omega[:6].norm(dim=-1))


def test_symv_and_pcg_solve_symmetric_systems() -> None:
    generator = torch.Generator().manual_seed(0)
    m = torch.randn(4, 20, 20, dtype=torch.float64, generator=generator)
    a = m @ m.transpose(1, 2) + 20 * torch.eye(20, dtype=torch.float64)
    b = torch.randn(4, 20, dtype=torch.float64, generator=generator)
    torch.testing.assert_close(symv(a, b), (a @ b[..., None])[..., 0])
    jacobi = torch.diag_embed(1 / a.diagonal(dim1=1, dim2=2))
    x = pcg(a, jacobi, b, torch.zeros_like(b), steps=20)
    torch.testing.assert_close(x, torch.linalg.solve(a, b), rtol=1e-6, atol=1e-8)
