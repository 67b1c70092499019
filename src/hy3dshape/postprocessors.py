"""Mesh clean-up after surface extraction: floaters, degenerate faces, face reduction.

The three callables keep the names of upstream Hunyuan3D-2.1 and run in this order in
``postprocess_mesh`` (what every shape engine's output goes through before texturing):

* ``FloaterRemover``: drops connected components with fewer faces than 0.5 % of the largest
  component's (pymeshlab's "small disconnected components" rule, which upstream uses).
* ``DegenerateFaceRemover``: drops faces with a repeated vertex or zero area, and the vertices no
  face references.
* ``FaceReducer`` (from ``hy3dcore.mesh``, shared with the texture stage): quadric edge-collapse
  decimation to at most ``max_facenum`` faces, landing in ``[0.95, 1.0] x max_facenum``.

Everything works on the vertex/face arrays in memory: no temporary files (upstream round-trips
through PLY/OBJ files). Per-vertex and per-face attributes (colours, UVs) are not carried over;
meshes from marching cubes have none. See ``docs/mesh.md`` for the benchmark.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import trimesh

from hy3dcore.mesh import (
    DEFAULT_MAX_FACENUM,
    FAST_SIMPLIFICATION,
    FaceReducer,
    check_max_facenum,
    compact,
    mesh_arrays,
)

logger = logging.getLogger(__name__)

#: A component is a floater when it has fewer faces than this fraction of the largest component.
FLOATER_FACE_RATIO = 0.005
#: A face is degenerate when its area is at most this fraction of the squared bounding-box diagonal.
DEGENERATE_AREA_RATIO = 1e-14

#: ``FaceReducer`` lives in ``hy3dcore.mesh`` (the texture stage uses it too); it is re-exported here and
#: from ``hy3dshape``, where upstream's users look for it.
__all__ = ["DegenerateFaceRemover", "FaceReducer", "FloaterRemover", "postprocess_mesh"]


# --------------------------------------------------------------------------------------------------
# Array functions
# --------------------------------------------------------------------------------------------------


def face_component_labels(faces: np.ndarray, vertex_count: int) -> tuple[np.ndarray, int]:
    """Connected-component label of every face, and the number of labels.

    Faces are connected when they share a vertex (scipy sparse graph of the face edges). On
    marching-cubes output this equals edge connectivity; on other meshes two parts touching at a
    single vertex count as one component, which can only keep more.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if len(faces) == 0:
        return np.zeros(0, dtype=np.int64), 0
    # Two edges per face are enough to connect its three vertices.
    rows = np.concatenate([faces[:, 0], faces[:, 1]])
    cols = np.concatenate([faces[:, 1], faces[:, 2]])
    weights = np.ones(len(rows), dtype=np.int32)
    graph = coo_matrix((weights, (rows, cols)), shape=(vertex_count, vertex_count)).tocsr()
    count, vertex_labels = connected_components(graph, directed=False)
    return vertex_labels[faces[:, 0]], count


def floater_face_mask(faces: np.ndarray, vertex_count: int, ratio: float = FLOATER_FACE_RATIO) -> np.ndarray:
    """Boolean mask of the faces to keep: those of components with at least ``ratio`` x the faces
    of the largest component (``floor`` of it, as pymeshlab). The largest component is always kept."""
    labels, count = face_component_labels(faces, vertex_count)
    if count == 0:
        return np.ones(0, dtype=bool)
    faces_per_component = np.bincount(labels, minlength=count)
    threshold = math.floor(ratio * faces_per_component.max())
    return faces_per_component[labels] >= threshold


def degenerate_face_mask(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Boolean mask of the degenerate faces: a repeated vertex index, or (near) zero area
    (at most ``DEGENERATE_AREA_RATIO`` x the squared bounding-box diagonal)."""
    if len(faces) == 0:
        return np.zeros(0, dtype=bool)
    repeated = (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 0] == faces[:, 2])
    origin = vertices[faces[:, 0]]
    edge_a = vertices[faces[:, 1]] - origin
    edge_b = vertices[faces[:, 2]] - origin
    # Squared norm of the cross product (twice the area, squared), written out: np.cross is slower.
    normal_x = edge_a[:, 1] * edge_b[:, 2] - edge_a[:, 2] * edge_b[:, 1]
    normal_y = edge_a[:, 2] * edge_b[:, 0] - edge_a[:, 0] * edge_b[:, 2]
    normal_z = edge_a[:, 0] * edge_b[:, 1] - edge_a[:, 1] * edge_b[:, 0]
    doubled_area_sq = normal_x * normal_x + normal_y * normal_y + normal_z * normal_z
    diagonal_sq = float(np.sum((vertices.max(axis=0) - vertices.min(axis=0)) ** 2))
    return repeated | (doubled_area_sq <= (2.0 * DEGENERATE_AREA_RATIO * diagonal_sq) ** 2)


def merge_coincident_vertices(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge vertices with bit-identical positions (first occurrence kept) and renumber the faces."""
    _unique, first, inverse = np.unique(vertices, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    if len(first) == len(vertices):
        return vertices, faces
    return vertices, first[inverse][faces]


# --------------------------------------------------------------------------------------------------
# Callables with the upstream names
# --------------------------------------------------------------------------------------------------


class FloaterRemover:
    """Callable: ``FloaterRemover()(mesh)`` -> mesh without its small floating components.

    A component is dropped when it has fewer faces than ``min_face_ratio`` (default 0.5 %) of the
    largest component. The input is returned unchanged (same object) when nothing is dropped.
    """

    def __init__(self, min_face_ratio: float = FLOATER_FACE_RATIO):
        if not 0.0 <= min_face_ratio < 1.0:
            raise ValueError(f"min_face_ratio must be in [0, 1), got {min_face_ratio!r}")
        self.min_face_ratio = min_face_ratio

    def __call__(self, mesh: trimesh.Trimesh) -> trimesh.Trimesh:
        vertices, faces = mesh_arrays(mesh)
        keep = floater_face_mask(faces, len(vertices), self.min_face_ratio)
        if keep.all():
            return mesh
        logger.debug("floater removal: dropped %d of %d faces", int((~keep).sum()), len(faces))
        return trimesh.Trimesh(*compact(vertices, faces[keep]), process=False)


class DegenerateFaceRemover:
    """Callable: ``DegenerateFaceRemover()(mesh)`` -> mesh without degenerate faces.

    Drops faces with a repeated vertex index or zero area, then the vertices no face references.
    Zero-area faces whose corners coincide (marching cubes at grid values equal to the level) are
    collapsed by merging the coincident vertices first, which keeps a closed surface closed. The
    input is returned unchanged (same object) when it is already clean.
    """

    def __call__(self, mesh: trimesh.Trimesh) -> trimesh.Trimesh:
        vertices, faces = mesh_arrays(mesh)
        degenerate = degenerate_face_mask(vertices, faces)
        referenced = np.zeros(len(vertices), dtype=bool)
        referenced[faces.ravel()] = True
        if not degenerate.any() and referenced.all():
            return mesh
        if degenerate.any():
            vertices, faces = merge_coincident_vertices(vertices, faces)
            degenerate = degenerate_face_mask(vertices, faces)
        logger.debug("degenerate-face removal: dropped %d of %d faces", int(degenerate.sum()), len(faces))
        return trimesh.Trimesh(*compact(vertices, faces[~degenerate]), process=False)


def postprocess_mesh(
    mesh: trimesh.Trimesh,
    max_facenum: int = DEFAULT_MAX_FACENUM,
    *,
    reduction_method: str = FAST_SIMPLIFICATION,
) -> trimesh.Trimesh:
    """``FloaterRemover``, ``DegenerateFaceRemover`` then ``FaceReducer(reduction_method)`` to at
    most ``max_facenum`` faces: the clean-up every shape engine's output goes through."""
    reducer = FaceReducer(reduction_method)
    max_facenum = check_max_facenum(max_facenum)
    start = time.perf_counter()
    input_faces = len(mesh.faces)
    mesh = FloaterRemover()(mesh)
    mesh = DegenerateFaceRemover()(mesh)
    mesh = reducer(mesh, max_facenum)
    logger.info(
        "post-processing: %d -> %d faces (max %d, %s) in %.3f s",
        input_faces, len(mesh.faces), max_facenum, reduction_method, time.perf_counter() - start,
    )
    return mesh
