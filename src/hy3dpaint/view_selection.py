"""Choice of the camera views to paint and bake (FACTS §4).

Thirty candidate (elevation, azimuth) views with weights; the first six are always used, then views
are added greedily while each adds more than ``MIN_COVERAGE_GAIN`` of the surface area (as a
fraction of the total) not yet seen, up to ``max_num_view``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from hy3dpaint.render.mesh_renderer import MeshRenderer

logger = logging.getLogger(__name__)

#: Resolution of the face-id renders used to measure coverage.
SELECTION_RENDER_SIZE = 1024
#: Number of leading candidates that are always selected.
ALWAYS_SELECTED = 6
#: A further view is accepted only if it adds more than this fraction of the surface area.
MIN_COVERAGE_GAIN = 0.01
#: Weight of each of the 24 ring views (elevation +-20 every 30 degrees of azimuth).
RING_VIEW_WEIGHT = 0.01
#: Half-size of the boundary-erosion box at render size 512; scaled linearly with the render size.
BOUNDARY_KERNEL_AT_512 = 2


@dataclass(frozen=True)
class View:
    """One camera view: angles in degrees and the bake weight."""

    elevation: float
    azimuth: float
    weight: float


def candidate_views() -> list[View]:
    """The 30 candidates in order: 6 principal views, then (+20, a), (-20, a) for a = 0, 30, ..., 330."""
    views = [
        View(0.0, 0.0, 1.0),
        View(0.0, 90.0, 0.1),
        View(0.0, 180.0, 0.5),
        View(0.0, 270.0, 0.1),
        View(90.0, 0.0, 0.05),
        View(-90.0, 180.0, 0.05),
    ]
    for azimuth in range(0, 360, 30):
        views.append(View(20.0, float(azimuth), RING_VIEW_WEIGHT))
        views.append(View(-20.0, float(azimuth), RING_VIEW_WEIGHT))
    return views


def boundary_kernel_size(render_size: int) -> int:
    """Half-size ``k`` of the ``(2k + 1)^2`` boundary box used when baking renders of ``render_size``.

    The reference leaves the value computed at ``SELECTION_RENDER_SIZE`` (k = 4) in place after view
    selection (FACTS §12.4); the bake uses that value, see ``bake``.
    """
    return int(BOUNDARY_KERNEL_AT_512 / 512 * render_size)


def face_areas(renderer: MeshRenderer) -> np.ndarray:
    """Float32 ``[F + 1]``: area of face id ``i`` (face index + 1) of the normalised mesh; entry 0 is 0."""
    corners = renderer.vtx_pos[renderer.pos_idx]
    doubled = torch.linalg.vector_norm(
        torch.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0], dim=-1), dim=-1
    )
    return np.concatenate([[0.0], (doubled * 0.5).cpu().numpy()]).astype(np.float32)


def visible_face_sets(renderer: MeshRenderer, views: list[View], resolution: int = SELECTION_RENDER_SIZE) -> np.ndarray:
    """Bool ``[len(views), F + 1]``: which face ids (0 = background) each view's face-id render shows."""
    visible = np.zeros((len(views), renderer.pos_idx.shape[0] + 1), dtype=bool)
    for row, view in enumerate(views):
        ids = renderer.render_face_ids(view.elevation, view.azimuth, resolution)
        visible[row, torch.unique(ids).cpu().numpy()] = True
    return visible


def greedy_selection(visible: np.ndarray, areas: np.ndarray, max_num_view: int) -> list[int]:
    """Indices of the chosen candidates: the first ``ALWAYS_SELECTED``, then greedy coverage.

    ``visible`` is bool ``[candidates, F + 1]`` (see :func:`visible_face_sets`), ``areas`` ``[F + 1]``
    (see :func:`face_areas`). Each round takes the unselected candidate whose newly seen faces add the
    largest fraction of the total area (the earlier one on ties) if that gain exceeds
    ``MIN_COVERAGE_GAIN``; it stops otherwise or at ``max_num_view`` views.
    """
    if max_num_view < 1:
        raise ValueError(f"max_num_view must be at least 1, got {max_num_view}")
    fractions = np.asarray(areas, dtype=np.float64)
    fractions = fractions / fractions.sum()
    selected = list(range(ALWAYS_SELECTED))
    seen = visible[selected].any(axis=0)
    for _ in range(max_num_view - ALWAYS_SELECTED):
        best_gain, best = 0.0, None
        for index in range(len(visible)):
            if index in selected:
                continue
            gain = float(fractions[visible[index] & ~seen].sum())
            if gain > best_gain:
                best_gain, best = gain, index
        if best is None or best_gain <= MIN_COVERAGE_GAIN:
            break
        selected.append(best)
        seen |= visible[best]
    return selected


def select_views(renderer: MeshRenderer, max_num_view: int) -> list[View]:
    """Views to paint, in selection order (the reference's greedy coverage rule on 1024 px renders).

    The first ``ALWAYS_SELECTED`` candidates are taken even when ``max_num_view`` is smaller.
    Raises ``ValueError`` when ``max_num_view`` is below 1.
    """
    if max_num_view < 1:
        raise ValueError(f"max_num_view must be at least 1, got {max_num_view}")
    candidates = candidate_views()
    if max_num_view <= ALWAYS_SELECTED:
        chosen = candidates[:ALWAYS_SELECTED]
    else:
        visible = visible_face_sets(renderer, candidates)
        chosen = [candidates[index] for index in greedy_selection(visible, face_areas(renderer), max_num_view)]
    logger.info("selected %d views: %s", len(chosen), [(v.elevation, v.azimuth) for v in chosen])
    return chosen
