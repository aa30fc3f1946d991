"""Several photos of one person -> one ICT head: a joint identity, one pose and expression per photo, and
one texture baked from every photo (``IctBackend.reconstruct_person``).

Data path, for P photos (the largest face of each):

    FrontEnd.locate -> IctFitter.fit_person (models/backends/ict/fit.py): each photo's own fit and the
       joint fit (one identity, per photo a pose and expression)
    -> outliers: a photo whose own identity lies far from the photos' median (``left_out``, ``OUTLIER_MM``
       at the landmarks) is reported and left out, never averaged in (the joint fit is redone without
       it); so is a photo without a face
    -> per photo the single-photo bake (HeadBaker through IctBackend.bake_views: its photo, mirror and
       fill) and its per-vertex photo weights
    -> ``ViewBlend``: per texel, each photo's weight (its vertices' weights interpolated over the atlas,
       the front photo's preferred by ``OTHER_VIEW``) sharpened to a power, ``VIEW_POWER``, and
       normalised: each texel comes from the photo that sees it best, and where two see it alike the
       weights cross smoothly, so seams blend instead of cutting.
       Texels no photo shows keep the reference photo's own mirror and fill. Each photo's colours are
       first matched to the reference photo's on the texels both see well (exposure, white balance).

The head carries the reference photo's pose and expression (the most frontal kept photo): its OBJ/GLB
are the single-photo path's files of that photo, with the joint identity and the blended texture.

Why the bake is per photo and combined afterwards, instead of one bake over all photos: HeadBaker's
weights, light estimate, occluder and shadow rules are per photo (each photo has its own light and its
own occluders), so each photo is baked exactly as alone and only the choice of source per texel is new.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import distance_transform_edt
from torch import Tensor

from face3d.models.backends.frontend import to_host
from face3d.models.backends.ict.fit import IctFit, IctFitter
from face3d.models.backends.ict.topology import HeadTopology
from face3d.models.geometry.pose import PoseFit
from face3d.models.geometry.ramps import smoothstep  # the bake's ramp: the same blend bands
from face3d.models.geometry.uv_raster import rasterize_atlas
from face3d.models.nets.frontend import Located, StageClock
from face3d.models.reconstruction import PersonPhoto, PersonReconstruction, face_from_host

if TYPE_CHECKING:
    from face3d.models.backends.ict.backend import IctBackend

OUTLIER_MM = 3.0
"""RMS distance (mm) at the landmarks between a photo's own identity and the photos' median from which
it is left out. Measured on the photos' own fits: frontal photos of different people lie 2.8-5.5 mm
apart (four test photos); the astronaut turned 35° either way (photos of renders of its fitted head)
lies up to 2.8 mm from its front photo, as a turned view's single fit is biased. So this catches clearly
different faces and keeps turned views; a stranger within 3 mm of the others (astronaut vs face_001,
2.8 mm) is not caught. Not calibrated on real turned series (no package we can fetch ships one)."""
VIEW_POWER = 12.0
"""Texel weights are raised to this before normalising: the best view takes a texel (90 % of it once its
weight is 1.2x the next view's), so two views blend only where they see a point alike (the seams). A
gentle power (4) averaged views everywhere the face is seen from both, and the views' few pixels of
misregistration showed as doubled eyes and lips."""
OTHER_VIEW = 0.7
"""The other photos' weights are scaled by this against the reference (front) photo's: where the front
photo sees a point well it keeps it; a turned photo takes over where the front one sees it at a slant."""
OTHER_SURE = (0.5, 0.85)  # another photo's weight ramp: no part in a texel below, its full weight above
SEEN = 0.5  # a texel counts as seen by a photo from this photo weight on (the coverage numbers)
BLEND_MAP = 512  # the per-texel weight maps' side: the weights are smooth, the textures are upsampled
MATCH_TEXELS = 400  # fewest texels two photos must both see well for their colours to be matched
MATCH_RANGE = (0.67, 1.5)  # the most a photo's colours are scaled to match the reference's


def subset(found: Located, faces: Tensor) -> Located:
    """The located faces ``faces`` (an index) of a batch, with the batch's photos unchanged."""
    pick = {
        name: getattr(found, name).index_select(0, faces)
        for name in ("face_image", "boxes", "scores", "landmarks", "presence", "rois")
    }
    blendshapes = None if found.blendshapes is None else found.blendshapes.index_select(0, faces)
    return dataclasses.replace(found, blendshapes=blendshapes, **pick)


def identity_distance_mm(fitter: IctFitter, identity: Tensor, reference: Tensor) -> Tensor:
    """(F,) weighted RMS distance, mm, between the landmark points of ``identity`` (F, 100) and
    ``reference`` (100,), neutral expression: how different two fitted faces' shapes are, in the units a
    likeness is judged in (coefficients weigh shape unevenly)."""
    basis = fitter.lm_basis[:, : fitter.n_identity]  # (P*3, 100)
    moved = ((identity - reference) @ basis.T).view(len(identity), -1, 3).norm(dim=-1)  # (F, P) cm
    w = fitter.weight
    return 10.0 * ((moved.square() * w).sum(dim=1) / w.sum()).sqrt()


def left_out(fitter: IctFitter, single: IctFit) -> tuple[Tensor, Tensor]:
    """(F,) bool: the photos left out of the head, and (F,) each photo's distance (mm) from the photos'
    median identity, both from the photos' own fits (``single``: like is compared with like; a joint
    identity rests on more data and is less shrunk towards the mean, so its distance to any one photo's
    own identity says little about who is in the photo).

    A photo further than ``OUTLIER_MM`` from the median is left out. Two photos have no majority: when
    they lie more than ``OUTLIER_MM`` apart, the less frontal one is left out; when no photo is near the
    median, the most frontal one stays alone (the front view is the one a likeness is judged by)."""
    faces, identity = len(single.identity), single.identity
    frontal = single.pose.rotation[:, 2, 2]  # cos of the angle between the face and the view axis
    if faces < 2:
        return torch.zeros(faces, dtype=torch.bool, device=identity.device), identity.new_zeros(faces)
    if faces == 2:  # the median of two is their mean: each lies half their distance from it
        distance = identity_distance_mm(fitter, identity, identity.mean(dim=0))
        return (distance * 2 > OUTLIER_MM) & (frontal < frontal.max()), distance
    distance = identity_distance_mm(fitter, identity, identity.median(dim=0).values)
    far = distance > OUTLIER_MM
    return (frontal < frontal.max()) if bool(far.all()) else far, distance


class ViewBlend:
    """Per-texel photo weights of several views at ``BLEND_MAP``² (or ``uv_size``² when smaller), from
    their per-vertex weights: each texel's triangle and barycentric weights (texels off the head take
    their nearest head texel's, as HeadBaker's atlas does), the head texels and the face tile's."""

    def __init__(self, topology: HeadTopology, size: int, device: torch.device) -> None:
        self.size = size
        owner, bary = rasterize_atlas(topology.uvs, topology.triangle_uvs, size)
        inside = owner >= 0
        _, (rows, cols) = distance_transform_edt(~inside, return_indices=True)
        nearest = (rows * size + cols).ravel()
        tri = owner.ravel()[nearest]
        face = topology.triangle_material[tri] == topology.material_names.index("M_Face")

        def put(a: np.ndarray) -> Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).to(device)

        self.vid = put(topology.triangles[tri])  # (S², 3)
        self.bary = put(bary.reshape(-1, 3)[nearest])
        self.inside = put(inside.ravel())
        self.face_tile = put(face & inside.ravel())

    def texel_weights(self, weights: Tensor) -> Tensor:
        """(K, V) per-vertex weights -> (K, S²) per texel (barycentric blends)."""
        return (weights.float()[:, self.vid] * self.bary).sum(-1)

    def blend(self, textures: Tensor, weights: Tensor, reference: int) -> tuple[Tensor, dict[str, Tensor]]:
        """One (S, S, 3) uint8 texture from K views' (K, S, S, 3) textures and (K, V) vertex weights.

        Returns it with the numbers the result reports: ``share`` (K,) each view's part of the photo-
        backed texels, ``seen`` / ``reference_seen`` the head's texels some view (the reference view)
        sees from ``SEEN`` on, ``coverage`` the face tile's mean best photo weight (the single-photo
        path's coverage, with the best view per texel)."""
        views, uv = len(textures), textures.shape[1]
        texel = self.texel_weights(weights)  # (K, N)
        # Another photo counts only where it sees well (OTHER_SURE): its outline and slanted fringes
        # carry background and shadow (dark smears under the jaw), which the front photo's fill hides.
        sure = smoothstep(texel, *OTHER_SURE)
        sure[reference] = 1.0
        usable = texel.clamp_min(0) * sure
        best = usable.amax(dim=0)
        bias = torch.full((views, 1), OTHER_VIEW, device=texel.device)
        bias[reference] = 1.0
        biased = usable * bias
        # relative to each texel's best view before the power: 0.07^12 would underflow float32
        power = (biased / biased.amax(dim=0).clamp_min(1e-6)).pow(VIEW_POWER)
        part = power / power.sum(dim=0).clamp_min(1e-12)  # (K, N): sums to 1 (the best view's term is 1)
        photo = smoothstep(best, 0.05, 0.3)  # where no view sees: the reference's own mirror and fill
        own = part * photo
        own[reference] += 1 - photo
        inside = self.inside
        stats = {
            "share": (part * photo)[:, inside].sum(1) / (photo[inside].sum().clamp_min(1e-6)),
            "seen": (texel[:, inside].amax(dim=0) >= SEEN).float().mean(),
            "reference_seen": (texel[reference, inside] >= SEEN).float().mean(),
            "coverage": best[self.face_tile].mean(),
        }
        gains = self._colour_gains(textures, texel, reference)  # (K, 3)
        maps = own.view(views, 1, self.size, self.size)
        if self.size != uv:
            maps = F.interpolate(maps, size=(uv, uv), mode="bilinear", align_corners=False)
        out = torch.zeros((uv, uv, 3), dtype=torch.float32, device=textures.device)
        for k in range(views):  # one view at a time: K float copies of a 4096² texture would not fit
            out.addcmul_(textures[k].float() * gains[k], maps[k, 0, ..., None])
        return out.clamp_(0, 255).add_(0.5).to(torch.uint8), stats

    def _colour_gains(self, textures: Tensor, texel: Tensor, reference: int) -> Tensor:
        """(K, 3) per-channel gains taking each view's colours to the reference's, measured on the head
        texels both see well (another exposure or white balance would show as a seam); 1 without enough."""
        small = F.interpolate(
            textures.permute(0, 3, 1, 2).float(), size=(self.size, self.size), mode="area"
        ).flatten(2)  # (K, 3, S²)
        gains = torch.ones((len(textures), 3), device=textures.device)
        for k in range(len(textures)):
            both = (texel[k] >= SEEN) & (texel[reference] >= SEEN) & self.inside
            if k == reference or int(both.sum()) < MATCH_TEXELS:
                continue
            ratio = small[reference][:, both].mean(1) / small[k][:, both].mean(1).clamp_min(1.0)
            gains[k] = ratio.clamp(*MATCH_RANGE)
        return gains


class PersonReconstructor:
    """``IctBackend.reconstruct_person``'s work, on the backend's loaded model, front end and bakers."""

    def __init__(self, backend: IctBackend) -> None:
        self.backend = backend
        self._blends: dict[int, ViewBlend] = {}

    def _blend(self, uv_size: int) -> ViewBlend:
        size = min(uv_size, BLEND_MAP)
        if size not in self._blends:
            self._blends[size] = ViewBlend(self.backend.topology_, size, self.backend.device)
        return self._blends[size]

    @torch.inference_mode()
    def reconstruct(self, images: list[np.ndarray], uv_size: int, lighting: str) -> PersonReconstruction:
        """The module docstring's data path; photos without a face, or left out, are reported in
        ``photos`` (none with a face: no ``faces``, which the pipeline answers with NoFaceError)."""
        backend, fitter = self.backend, self.backend.fitter
        clock = StageClock(backend.device)
        found = backend._front().locate(images, False, clock)
        photos = [PersonPhoto(int(im.shape[1]), int(im.shape[0]), "no-face") for im in images]
        if not len(found.face_image):
            return PersonReconstruction(photos[0].width, photos[0].height, [], clock.ms, photos)
        landmarks = found.landmarks.float()
        person = fitter.fit_person(landmarks, found.blendshapes, with_vertices=False)
        outlier, distance = left_out(fitter, person.single)
        kept = torch.nonzero(~outlier)[:, 0]
        joint = person.joint
        if len(kept) < len(outlier):  # an outlier is left out of the fit, not only of the bake
            scores = None if found.blendshapes is None else found.blendshapes[kept]
            joint = fitter.fit_person(landmarks[kept], scores, with_vertices=False).joint
        clock.mark("landmarks")
        views = subset(found, kept)
        fitted = backend.fitted(views.landmarks.float(), joint)
        textures, coverage, weights = backend.bake_views(views, fitted, uv_size, lighting)
        reference = int(joint.pose.rotation[:, 2, 2].argmax())
        texture, stats = self._blend(uv_size).blend(textures, weights, reference)
        clock.mark("bake")
        host = to_host(views, fitted, textures[:, :0, :0], coverage)
        faces = [face_from_host(host, k, backend._face_model(host, k)) for k in range(len(kept))]
        image_of = found.face_image.tolist()
        for k, index in enumerate(kept.tolist()):
            photos[image_of[index]] = dataclasses.replace(
                photos[image_of[index]], status="fitted", face=faces[k],
                identity_distance_mm=float(distance[index]), texture_share=float(stats["share"][k]),
            )  # fmt: skip
        dropped = torch.nonzero(outlier)[:, 0]
        if len(dropped):  # reported with their own fits: what made them outliers
            odd = subset(found, dropped)
            odd_fit = backend.fitted(odd.landmarks.float(), select_fits(person.single, dropped))
            none = textures.new_zeros((len(dropped), 0, 0, 3))  # an outlier's photo is not baked
            odd_host = to_host(odd, odd_fit, none, coverage.new_zeros(len(dropped)))
            for k, index in enumerate(dropped.tolist()):
                face = face_from_host(odd_host, k, backend._face_model(odd_host, k))
                photos[image_of[index]] = dataclasses.replace(
                    photos[image_of[index]],
                    status="outlier",
                    face=face,
                    identity_distance_mm=float(distance[index]),
                )
        head = dataclasses.replace(
            faces[reference], texture=texture.cpu().numpy(), coverage=float(stats["coverage"])
        )
        clock.mark("bake")
        first = image_of[int(kept[reference])]
        return PersonReconstruction(
            photos[first].width, photos[first].height, [head], clock.ms, photos, first,
            float(stats["seen"]), float(stats["reference_seen"]),
        )  # fmt: skip


def select_fits(fit: IctFit, faces: Tensor) -> IctFit:
    """The fits of ``faces`` (an index) only."""
    pose = PoseFit(
        *(getattr(fit.pose, n).index_select(0, faces) for n in ("rotation", "scale", "translation_cam"))
    )
    return IctFit(
        pose, fit.identity[faces], fit.expression[faces], fit.residual_px[faces],
        None if fit.vertices is None else fit.vertices[faces],
    )  # fmt: skip
