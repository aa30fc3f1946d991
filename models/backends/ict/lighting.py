"""The photo's light on the skin: second-order spherical harmonics fitted to the fitted head's normals.

Why: a texture baked straight from a photo keeps that photo's light (a side light paints one cheek
dark), and an app that lights the head itself then shows two lights. With a morphable head the
standard fix is a low-order lighting model (Ramamoorthi & Hanrahan: nine SH coefficients per channel
capture ~98 % of the irradiance of any distant light on a convex Lambertian surface):

    skin colour (linear RGB) at a vertex with unit normal n  ≈  B(n) = Σ_k c_k · Y_k(n),  k = 0..8

where ``c`` holds the skin's mean albedo times the light (the two are not separable from one photo).
It is fitted per face and channel by weighted least squares over the well-seen skin vertices
(facing the camera, inside the trusted region, outside the eyes and mouth), iteratively reweighted
(Cauchy) so that brows, lips, stubble, hair strands and highlights, which are not skin under the
light, barely count; the second band is damped (ridge), since a photo shows only the front half of
the sphere of normals.

``remove`` divides it out: every photo sample is multiplied by ``mean B / B(n)`` (the mean over the
skin used for the fit, so the skin keeps its average colour), done in linear light and applied to
the sRGB samples as that gain to the power 1/2.2. Normals are in the camera frame with the model's
axes (x right, y up, z towards the camera), so a frontal head's normals are its model-space normals.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

GAMMA = 2.2
LUMA = (0.2126, 0.7152, 0.0722)  # Rec. 709 weights: the brightness every rule of the bake compares
# Ridge per SH band, relative to the mean diagonal of the normal equations: the first band (the
# light's direction) nearly free, the second (its shape) damped.
RIDGE = (0.0, 0.01, 0.01, 0.01, 0.2, 0.2, 0.2, 0.2, 0.2)
CAUCHY = 0.2  # residual (relative to the skin's mean) at which a sample's weight halves
ITERATIONS = 3
GAIN_RANGE = (0.4, 3.0)  # linear-light gain limits: deep shadows are not brightened into noise


def luma(colours: Tensor) -> Tensor:
    """(...,) the Rec. 709 luma of colours (..., 3), in their own units (sRGB or linear)."""
    return colours @ colours.new_tensor(LUMA)


def log_chroma(colours: Tensor) -> Tensor:
    """(..., 2) log r/g and log b/g of colours (..., 3) (0..255, clamped at 1): hue and saturation
    without the brightness, which shadow changes."""
    log = colours.clamp_min(1.0).log()
    return torch.stack([log[..., 0] - log[..., 1], log[..., 2] - log[..., 1]], dim=-1)


def sh_basis(normals: Tensor) -> Tensor:
    """(..., 9) real SH basis Y_k of unit normals (..., 3) (x, y, z), bands 0-2, orthonormal."""
    x, y, z = normals.unbind(-1)
    return torch.stack(
        [
            torch.full_like(x, 0.282095),
            0.488603 * y,
            0.488603 * z,
            0.488603 * x,
            1.092548 * x * y,
            1.092548 * y * z,
            0.315392 * (3 * z * z - 1),
            1.092548 * x * z,
            0.546274 * (x * x - y * y),
        ],
        dim=-1,
    )


def fit_lighting(colours: Tensor, normals: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """SH lighting of F faces from their skin samples.

    colours (F, P, 3) sRGB 0..255; normals (F, P, 3) unit, camera frame; weights (F, P) 0..1 (0 = not
    skin). Returns ``coefficients`` (F, 3, 9), linear RGB 0..1 per channel, and ``mean`` (F, 3): the
    weighted mean of B over the samples (the brightness ``remove`` keeps).
    """
    linear = (colours / 255).clamp_min(0) ** GAMMA
    basis = sh_basis(normals)  # (F, P, 9)
    ridge = torch.tensor(RIDGE, dtype=basis.dtype, device=basis.device)
    luma = torch.tensor(LUMA, dtype=basis.dtype, device=basis.device)
    robust = weights.clone()
    coefficients = basis.new_zeros((len(colours), 3, 9))
    for _ in range(ITERATIONS):
        weighted = basis * robust[..., None]
        normal = weighted.transpose(1, 2) @ basis  # (F, 9, 9)
        scale = normal.diagonal(dim1=1, dim2=2).mean(dim=1).clamp_min(1e-6)  # (F,)
        normal = normal + torch.diag_embed(ridge * scale[:, None]) + 1e-6 * torch.eye(9, device=basis.device)
        rhs = weighted.transpose(1, 2) @ linear  # (F, 9, 3)
        coefficients = torch.linalg.solve(normal, rhs).transpose(1, 2)  # (F, 3, 9)
        predicted = basis @ coefficients.transpose(1, 2)  # (F, P, 3)
        level = ((predicted @ luma) * robust).sum(dim=1, keepdim=True) / robust.sum(
            dim=1, keepdim=True
        ).clamp_min(1e-6)
        residual = ((linear - predicted) @ luma) / level.clamp_min(1e-3)  # relative to the skin's mean
        robust = weights / (1 + (residual / CAUCHY).square())
    shading = (basis @ coefficients.transpose(1, 2)).clamp_min(1e-4)
    total = robust.sum(dim=1, keepdim=True).clamp_min(1e-6)
    mean = (shading * robust[..., None]).sum(dim=1) / total
    return coefficients, mean


def relative_light(coefficients: Tensor, mean: Tensor, normals: Tensor) -> Tensor:
    """(F, V, 3) the light B(n) at unit normals (F, V, 3) over its mean on the skin (linear, >= 0)."""
    return (sh_basis(normals) @ coefficients.transpose(1, 2)).clamp_min(0) / mean[:, None].clamp_min(1e-6)


def delight_gain(light: Tensor) -> Tensor:
    """(F, V, 3) sRGB gains that divide a ``relative_light`` out (within GAIN_RANGE in linear light)."""
    return light.clamp_min(1e-4).reciprocal().clamp(*GAIN_RANGE) ** (1 / GAMMA)


def lighting_fields(model: Any) -> dict[str, Any]:
    """result.json's ``lighting`` member of one ``FaceModel`` (none when it carries no estimate)."""
    if getattr(model, "lighting", None) is None:
        return {}
    return {
        "lighting": {
            "texture": "removed" if model.lighting_removed else "kept",
            "model": "sh2",
            "frame": "camera: x right, y up, z towards the camera",
            "coefficients": [[round(float(c), 5) for c in channel] for channel in model.lighting],
        }
    }
