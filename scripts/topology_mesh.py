"""Mesh-only steps of scripts/make_topology.py: triangles, winding, UV layout and the invariant check.

They exist apart from the entry script because they need nothing but index arrays and a template
(no landmark net, no photos, no downloaded assets): steps 1, 4 and 5 of make_topology.py's
docstring. The entry script reads the edge set, builds the template and mirror map, then calls
these in order: ``find_triangles`` -> ``wind_consistently`` -> ``orient_outward`` -> ``layout_uv``
-> ``check``.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict, deque

import numpy as np

from face3d.models.backends.facemesh.topology import rasterize_uv, signed_areas

N_POINTS = 468
N_TRIANGLES = 852
UV_MARGIN = 0.01  # atlas inset so the seam padding stays inside the texture
SUPERELLIPSE_POWER = 4.0  # square-ish convex boundary: fills ~92% of the square, no corners


def find_triangles(edges: list[tuple[int, int]]) -> np.ndarray:
    """Faces of the edge graph: 3-cliques minus those that only close a ring of existing faces."""
    adj: dict[int, set[int]] = defaultdict(set)
    for a, b in edges:
        adj[a].add(b)
        adj[b].add(a)
    cliques = sorted(
        (a, b, c) for a in adj for b in adj[a] if b > a for c in adj[a] & adj[b] if c > b
    )  # fmt: skip
    uses = Counter(frozenset(e) for t in cliques for e in itertools.combinations(t, 2))
    faces = [t for t in cliques if not all(uses[frozenset(e)] == 3 for e in itertools.combinations(t, 2))]
    tris = np.array(faces, dtype=np.int64)
    edge_uses = Counter(frozenset(e) for t in faces for e in itertools.combinations(t, 2))
    assert len(tris) == N_TRIANGLES, len(tris)
    assert max(edge_uses.values()) == 2, "non-manifold edge"
    assert set(edge_uses) == {frozenset(e) for e in edges}, "faces do not use every edge"
    return tris


def wind_consistently(tris: np.ndarray) -> np.ndarray:
    """Orient every triangle like its neighbours (BFS over shared edges); the sign is fixed later."""
    out = tris.copy()
    by_edge: dict[frozenset[int], list[int]] = defaultdict(list)
    for i, t in enumerate(tris):
        for a, b in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0])):
            by_edge[frozenset((a, b))].append(i)
    done = np.zeros(len(tris), dtype=bool)
    done[0] = True
    queue = deque([0])
    while queue:
        i = queue.popleft()
        t = out[i]
        for a, b in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0])):
            for j in by_edge[frozenset((a, b))]:
                if done[j]:
                    continue
                u = out[j]
                directed = {(u[0], u[1]), (u[1], u[2]), (u[2], u[0])}
                if (a, b) in directed:  # same direction as in i: flip j
                    out[j] = u[[0, 2, 1]]
                done[j] = True
                queue.append(j)
    assert done.all(), "mesh is not connected"
    directed = Counter((t[k], t[(k + 1) % 3]) for t in out for k in range(3))
    assert max(directed.values()) == 1, "winding is inconsistent (non-orientable?)"
    return out


def orient_outward(tris: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Flip the (consistent) winding if the area-weighted normal points into the face (-Z)."""
    a, b, c = (template[tris[:, k]] for k in range(3))
    normals = np.cross(b - a, c - a)
    return tris if normals[:, 2].sum() > 0 else tris[:, [0, 2, 1]]


def boundary_loops(tris: np.ndarray) -> list[list[int]]:
    """Boundary loops (outer + holes), each ordered along the triangles' winding."""
    directed = {(t[k], t[(k + 1) % 3]) for t in tris for k in range(3)}
    nxt = {a: b for a, b in directed if (b, a) not in directed}
    loops, seen = [], set()
    for start in nxt:
        if start in seen:
            continue
        loop, v = [], start
        while v not in seen:
            seen.add(v)
            loop.append(int(v))
            v = nxt[v]
        loops.append(loop)
    return loops


def mean_value_weights(tris: np.ndarray, pts: np.ndarray) -> dict[tuple[int, int], float]:
    """Floater's mean-value weights w_ij = (tan(a/2) + tan(b/2)) / |p_j - p_i|, always positive."""
    weights: dict[tuple[int, int], float] = defaultdict(float)
    for t in tris:
        for k in range(3):
            i, j, m = t[k], t[(k + 1) % 3], t[(k + 2) % 3]
            e1, e2 = pts[j] - pts[i], pts[m] - pts[i]
            ang = np.arccos(np.clip(e1 @ e2 / (np.linalg.norm(e1) * np.linalg.norm(e2)), -1, 1))
            half = np.tan(ang / 2)
            weights[(i, j)] += half / np.linalg.norm(e1)
            weights[(i, m)] += half / np.linalg.norm(e2)
    return weights


def superellipse_boundary(
    loop: list[int], pts: np.ndarray, mirror: np.ndarray
) -> tuple[np.ndarray, list[int]]:
    """UV positions of the outer loop on a convex superellipse, by chord length, left/right symmetric.

    The loop is restarted at its top midline vertex (forehead), so the mirror of ``loop[k]`` is
    ``loop[-k]``; averaging the chord-length fractions of each pair makes the layout symmetric.
    """
    top = max((v for v in loop if mirror[v] == v), key=lambda v: pts[v, 1])
    k = loop.index(top)
    loop = loop[k:] + loop[:k]
    assert all(mirror[loop[i]] == loop[-i] for i in range(len(loop))), "outer loop is not symmetric"
    seg = np.linalg.norm(pts[loop] - pts[np.roll(loop, -1)], axis=1)
    frac = np.concatenate([[0.0], np.cumsum(seg)[:-1]]) / seg.sum()
    frac = (frac + (1 - frac[-np.arange(len(loop))]) % 1) / 2
    theta = np.pi / 2 + 2 * np.pi * frac  # counter-clockwise from the top, like the triangles' winding
    c, s = np.cos(theta), np.sin(theta)
    x = np.sign(c) * np.abs(c) ** (2 / SUPERELLIPSE_POWER)
    y = np.sign(s) * np.abs(s) ** (2 / SUPERELLIPSE_POWER)
    half = 0.5 - UV_MARGIN
    uv = np.zeros((len(pts), 2))
    uv[loop] = np.stack([0.5 + half * x, 0.5 + half * y], axis=1)
    return uv, loop


def layout_uv(tris: np.ndarray, template: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """Mean-value embedding of the mesh in the unit square (holes closed by virtual centres)."""
    loops = boundary_loops(tris)
    outer = max(loops, key=len)
    pts = template.copy()
    filled = [tris]
    for hole in (lp for lp in loops if lp is not outer):
        centre = len(pts)
        pts = np.vstack([pts, pts[hole].mean(0)])
        # Hole loops run opposite to the outer loop; fan triangles continue the winding.
        filled.append(np.array([[hole[(k + 1) % len(hole)], hole[k], centre] for k in range(len(hole))]))
    all_tris = np.vstack(filled)
    n = len(pts)
    uv_outer, outer = superellipse_boundary(outer, template, mirror)
    weights = mean_value_weights(all_tris, pts)
    lap = np.zeros((n, n))
    for (i, j), w in weights.items():
        lap[i, j] -= w
        lap[i, i] += w
    fixed = np.zeros(n, dtype=bool)
    fixed[outer] = True
    free = ~fixed
    uv = np.zeros((n, 2))
    uv[outer] = uv_outer[outer]
    uv[free] = np.linalg.solve(lap[np.ix_(free, free)], -lap[np.ix_(free, fixed)] @ uv[fixed])
    uv = uv[:N_POINTS]
    # Exact symmetry: the solve is symmetric up to rounding; make it bit-exact.
    uv = np.stack([(uv[:, 0] + 1 - uv[mirror, 0]) / 2, (uv[:, 1] + uv[mirror, 1]) / 2], axis=1)
    uv[mirror == np.arange(N_POINTS), 0] = 0.5
    return uv


def check(tris: np.ndarray, uvs: np.ndarray, mirror: np.ndarray) -> float:
    """Assert every invariant the runtime relies on; returns the atlas fill ratio at 2048."""
    assert tris.shape == (N_TRIANGLES, 3) and uvs.shape == (N_POINTS, 2)
    assert (mirror[mirror] == np.arange(N_POINTS)).all()
    assert (uvs >= 0).all() and (uvs <= 1).all()
    assert np.allclose(uvs[mirror, 0], 1 - uvs[:, 0], atol=1e-6)
    assert np.array_equal(uvs[mirror, 1], uvs[:, 1])
    areas = signed_areas(uvs, tris)
    assert (areas > 0).all(), f"{(areas <= 0).sum()} flipped UV triangles"
    owner, _, hits = rasterize_uv(uvs, tris, 2048)
    assert hits.max() == 1, "overlapping UV triangles"
    return float((owner >= 0).mean())
