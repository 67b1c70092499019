"""Quality measures of a UV layout, like for like between unwrappers (benchmarks, tests).

* stretch (Sander et al. 2001, "Texture mapping progressive meshes"): per triangle, the singular
  values Gamma >= gamma of the Jacobian of the map from UV to the surface; the L2 stretch of a
  triangle is sqrt((Gamma^2 + gamma^2) / 2), the layout's is the 3-D-area-weighted RMS of it. Both the
  L2 and the maximum stretch (max Gamma) are normalised by sqrt(UV area / surface area), so an
  isometric layout (up to a global scale) scores 1;
* texel density per chart: sqrt(UV area / surface area) of each chart relative to the layout's
  overall density; its spread is the 3-D-area-weighted coefficient of variation (0 = uniform);
* chart count (connected components of the UV faces) and seam length (surface length of the edges
  cut open by the layout, relative to sqrt of the surface area).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

#: Triangles with a UV area below this are degenerate: their stretch counts as infinite.
MIN_UV_AREA = 1e-20
#: Vertices closer than this (relative to the bounding-box diagonal) are the same surface point.
WELD_TOLERANCE = 1e-9


@dataclass(frozen=True)
class UVQuality:
    """Layout measures (see the module doc)."""

    l2_stretch: float
    max_stretch: float
    density_spread: float
    density_min_max: tuple[float, float]
    charts: int
    seam_length: float
    degenerate_faces: int

    def as_dict(self) -> dict:
        return asdict(self)


def _stretch(vertices: np.ndarray, uv: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per face: (L2 stretch, max singular value, 3-D area, UV area), unnormalised."""
    q = vertices[faces].astype(np.float64)
    p = uv[faces].astype(np.float64)
    s, t = p[..., 0], p[..., 1]
    uv_area = ((s[:, 1] - s[:, 0]) * (t[:, 2] - t[:, 0]) - (s[:, 2] - s[:, 0]) * (t[:, 1] - t[:, 0])) / 2
    area = np.linalg.norm(np.cross(q[:, 1] - q[:, 0], q[:, 2] - q[:, 0]), axis=1) / 2
    safe = np.where(np.abs(uv_area) > MIN_UV_AREA, uv_area, 1.0)[:, None]
    ds = (q[:, 0] * (t[:, 1] - t[:, 2])[:, None] + q[:, 1] * (t[:, 2] - t[:, 0])[:, None]
          + q[:, 2] * (t[:, 0] - t[:, 1])[:, None]) / (2 * safe)
    dt = (q[:, 0] * (s[:, 2] - s[:, 1])[:, None] + q[:, 1] * (s[:, 0] - s[:, 2])[:, None]
          + q[:, 2] * (s[:, 1] - s[:, 0])[:, None]) / (2 * safe)
    a, b, c = (ds * ds).sum(1), (ds * dt).sum(1), (dt * dt).sum(1)
    root = np.sqrt((a - c) ** 2 + 4 * b * b)
    l2 = np.sqrt((a + c) / 2)
    largest = np.sqrt((a + c + root) / 2)
    degenerate = np.abs(uv_area) <= MIN_UV_AREA
    l2[degenerate] = largest[degenerate] = np.inf
    return l2, largest, area, np.abs(uv_area)


def _charts(faces: np.ndarray, vertex_count: int) -> np.ndarray:
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]]])
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(vertex_count, vertex_count))
    return connected_components(graph, directed=False)[1][faces[:, 0]]


def _seam_length(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Surface length of the edges that are open in the UV mesh but closed on the welded surface."""
    scale = float(np.linalg.norm(np.ptp(vertices, axis=0))) or 1.0
    keys = np.round(vertices / (scale * WELD_TOLERANCE)).astype(np.int64)
    _, welded = np.unique(keys, axis=0, return_inverse=True)
    welded = welded.reshape(-1)

    def edge_counts(index):
        edges = np.sort(np.stack([index[faces[:, [0, 1, 2]]], index[faces[:, [1, 2, 0]]]], axis=2).reshape(-1, 2), axis=1)
        unique, inverse, counts = np.unique(edges, axis=0, return_inverse=True, return_counts=True)
        return edges, counts[inverse.reshape(-1)]

    split_edges, split_counts = edge_counts(np.arange(len(vertices)))
    _, welded_counts = edge_counts(welded)
    seam = (split_counts == 1) & (welded_counts > 1)
    lengths = np.linalg.norm(vertices[split_edges[seam, 0]] - vertices[split_edges[seam, 1]], axis=1)
    return float(lengths.sum() / 2)  # each cut edge is open on both of its sides


def uv_quality(vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray) -> UVQuality:
    """Measures of a UV layout: ``vertices [V, 3]``, ``faces [F, 3]``, ``uv [V, 2]`` (seam-split mesh)."""
    vertices, faces, uv = np.asarray(vertices, np.float64), np.asarray(faces, np.int64), np.asarray(uv, np.float64)
    l2, largest, area, uv_area = _stretch(vertices, uv, faces)
    finite = np.isfinite(l2)
    total_area, total_uv = area.sum(), uv_area.sum()
    norm = np.sqrt(total_uv / total_area)
    l2_total = float(np.sqrt((l2[finite] ** 2 * area[finite]).sum() / area[finite].sum()) * norm)
    chart = _charts(faces, len(vertices))
    chart_area = np.bincount(chart, weights=area)
    chart_uv = np.bincount(chart, weights=uv_area)
    used = chart_area > 0
    density = np.sqrt(chart_uv[used] / chart_area[used]) / norm
    weights = chart_area[used] / chart_area[used].sum()
    mean = (density * weights).sum()
    spread = float(np.sqrt((weights * (density - mean) ** 2).sum()) / mean)
    return UVQuality(
        l2_stretch=l2_total,
        max_stretch=float(largest[finite].max() * norm) if finite.any() else float("inf"),
        density_spread=spread,
        density_min_max=(float(density.min()), float(density.max())),
        charts=int(used.sum()),
        seam_length=_seam_length(vertices, faces) / float(np.sqrt(total_area)),
        degenerate_faces=int((~finite).sum()),
    )
