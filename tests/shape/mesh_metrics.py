"""Mesh comparison used by the shape tests: the README's criteria for "the same surface"."""

from __future__ import annotations

import numpy as np
import trimesh
from scipy.spatial import cKDTree


def symmetric_mean_chamfer(first: np.ndarray, second: np.ndarray) -> float:
    """Mean of the two mean nearest-neighbour distances between point sets ``[N, 3]`` and ``[M, 3]``."""
    forward = cKDTree(second).query(first)[0].mean()
    backward = cKDTree(first).query(second)[0].mean()
    return float((forward + backward) / 2)


def assert_same_surface(mesh: trimesh.Trimesh, reference: trimesh.Trimesh, cell: float,
                        bbox_cells: float = 0.5, relative: float = 0.01, chamfer_cells: float = 0.1) -> None:
    """Bounding boxes within ``bbox_cells`` cells, area and volume within ``relative``, symmetric mean
    Chamfer distance (on the vertices) below ``chamfer_cells`` cells."""
    bbox_error = np.abs(mesh.bounds - reference.bounds).max()
    assert bbox_error <= bbox_cells * cell, f"bbox differs by {bbox_error / cell:.3f} cells"
    assert abs(mesh.area - reference.area) <= relative * reference.area, (mesh.area, reference.area)
    assert abs(mesh.volume - reference.volume) <= relative * abs(reference.volume), (mesh.volume, reference.volume)
    chamfer = symmetric_mean_chamfer(mesh.vertices, reference.vertices)
    assert chamfer < chamfer_cells * cell, f"Chamfer distance {chamfer / cell:.4f} cells"
