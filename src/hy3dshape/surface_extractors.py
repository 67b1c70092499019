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

    NaN cells (left by coarse-to-fine decoding) are treated as far outside. Raises ``ValueError``
    when the level is outside the grid's range.
    """
    from skimage.measure import marching_cubes as _mc

    grid = np.asarray(grid, dtype=np.float32)
    if np.isnan(grid).any():
        finite = grid[np.isfinite(grid)]
        fill = (finite.min() if finite.size else mc_level) - 1.0
        grid = np.where(np.isnan(grid), np.float32(min(fill, mc_level - 1.0)), grid)
    vertices, faces, _normals, _values = _mc(grid, level=mc_level, method="lewiner")
    return vertices, faces


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
