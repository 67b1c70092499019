"""Surface extraction: logit grid -> triangle mesh in world coordinates.

Conventions of Hunyuan3D-2.1 (FACTS.md §7-8): the grid holds ``R + 1`` samples per axis over
``[-box_v, box_v]``, axes (x, y, z); positive logits are inside. Marching cubes (Lewiner) runs at
``mc_level``; index coordinates map to world as ``i / (R + 1) * 2 * box_v - box_v`` (division by
``R + 1``, as upstream, which shrinks the mesh by ``R / (R + 1)``); faces are reversed so that they
face outwards.
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)


def marching_cubes(grid: np.ndarray, mc_level: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Lewiner marching cubes on a float32 ``[R+1, R+1, R+1]`` grid; index-space vertices, skimage faces.

    NaN points (never decoded by a coarse-to-fine decoder) are filled first (``fill_undecoded``).
    Raises ``ValueError`` when the level is outside the grid's range.
    """
    from skimage.measure import marching_cubes as _mc

    grid = fill_undecoded(np.asarray(grid, dtype=np.float32), mc_level)
    vertices, faces, _normals, _values = _mc(grid, level=mc_level, method="lewiner")
    return vertices, faces


def fill_undecoded(grid: np.ndarray, mc_level: float = 0.0) -> np.ndarray:
    """Replace the NaN points of a sparse grid ``[n, n, n]`` by the value of a decoded neighbour.

    A coarse-to-fine decoder leaves NaN only far from the surface, so every run of NaN along an axis
    lies entirely inside or entirely outside: it takes the value of the decoded point before it (or,
    at the start of a line, after it) along z, then y, then x; no sign change, hence no triangle, is
    created inside a run. Points with no decoded point on any of their three lines are set below
    ``mc_level`` (outside). Returns ``grid`` itself when it has no NaN, else a filled copy.
    """
    if not np.isnan(grid).any():
        return grid
    filled = grid.copy()
    for axis in (2, 1, 0):
        slab_axis = 0 if axis != 0 else 1  # fill slab by slab to bound the index arrays' memory
        for index in range(filled.shape[slab_axis]):
            plane = filled[(slice(None),) * slab_axis + (index,)]  # a view
            _fill_runs(plane, axis - (axis > slab_axis))
    remaining = np.isnan(filled)
    if remaining.any():
        finite = filled[~remaining]
        outside = min(float(finite.min()) if finite.size else mc_level, mc_level) - 1.0
        filled[remaining] = np.float32(outside)
    return filled


def _fill_runs(plane: np.ndarray, axis: int) -> None:
    """In place on a 2-D view: forward-fill, then back-fill, the NaN runs of ``plane`` along ``axis``."""
    values = np.moveaxis(plane, axis, -1)
    missing = np.isnan(values)
    if not missing.any() or missing.all():
        return
    positions = np.arange(values.shape[-1], dtype=np.int32)
    last = np.maximum.accumulate(np.where(missing, 0, positions), axis=-1)
    first_valid = np.argmax(~missing, axis=-1)
    forward = np.take_along_axis(values, last, axis=-1)
    before_first = positions[None] < first_valid[:, None]
    backward = np.take_along_axis(values, first_valid[:, None], axis=-1)
    values[...] = np.where(missing, np.where(before_first, backward, forward), values)


def index_to_world(vertices: np.ndarray, octree_resolution: int, box_v: float = 1.01) -> np.ndarray:
    """Map marching-cubes index coordinates to world coordinates (float64 math, float32 result)."""
    vertices = np.asarray(vertices, dtype=np.float64)
    return (vertices / (octree_resolution + 1) * (2.0 * box_v) - box_v).astype(np.float32)


class MCSurfaceExtractor:
    """Callable: ``extractor(grid_logits, mc_level, bounds, octree_resolution)`` -> list of meshes.

    ``grid_logits`` is ``[B, R+1, R+1, R+1]`` (numpy or torch). Each item of the result is
    ``(vertices float32 [V, 3], faces int64 [F, 3])`` with outward-facing (reversed) faces, or
    ``None`` when extraction failed for that item (as upstream).
    """

    def __call__(
        self,
        grid_logits,
        mc_level: float = 0.0,
        bounds: float = 1.01,
        octree_resolution: int | None = None,
    ) -> list[tuple[np.ndarray, np.ndarray] | None]:
        grids = _to_numpy(grid_logits)
        if grids.ndim == 3:
            grids = grids[None]
        results: list[tuple[np.ndarray, np.ndarray] | None] = []
        for grid in grids:
            resolution = octree_resolution if octree_resolution is not None else grid.shape[0] - 1
            try:
                vertices, faces = marching_cubes(grid, mc_level)
            except (ValueError, RuntimeError) as error:
                logger.warning("surface extraction failed: %s", error)
                results.append(None)
                continue
            world = index_to_world(vertices, resolution, bounds)
            results.append((world, np.ascontiguousarray(faces[:, ::-1]).astype(np.int64)))
        return results


def _to_numpy(array) -> np.ndarray:
    if hasattr(array, "detach"):
        array = array.detach().float().cpu().numpy()
    return np.asarray(array, dtype=np.float32)
