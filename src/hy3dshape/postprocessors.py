"""Mesh clean-up after surface extraction: floaters, degenerate faces, face reduction.

The three callables keep the names of upstream Hunyuan3D-2.1 and run in this order in
``postprocess_mesh`` (what every shape engine's output goes through before texturing):

* ``FloaterRemover``: drops connected components with fewer faces than 0.5 % of the largest
  component's (pymeshlab's "small disconnected components" rule, which upstream uses).
* ``DegenerateFaceRemover``: drops faces with a repeated vertex or zero area, and the vertices no
  face references.
* ``FaceReducer``: quadric edge-collapse decimation to at most ``max_facenum`` faces, landing in
  ``[0.95, 1.0] x max_facenum``; ``fast_simplification`` by default, pymeshlab as a quality option.

Everything works on the vertex/face arrays in memory: no temporary files (upstream round-trips
through PLY/OBJ files). Per-vertex and per-face attributes (colours, UVs) are not carried over;
meshes from marching cubes have none. See ``docs/mesh.md`` for the benchmark.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

import numpy as np
import trimesh

logger = logging.getLogger(__name__)

#: A component is a floater when it has fewer faces than this fraction of the largest component.
FLOATER_FACE_RATIO = 0.005
#: Default face budget of ``FaceReducer`` and ``postprocess_mesh`` (upstream's, and the contract's).
DEFAULT_MAX_FACENUM = 40_000
#: Smallest accepted ``max_facenum`` (a closed surface needs at least 4 triangles).
MIN_MAX_FACENUM = 4
#: A reduced mesh lands in ``[(1 - FACE_COUNT_TOLERANCE) * max_facenum, max_facenum]`` faces.
FACE_COUNT_TOLERANCE = 0.05
#: Decimation runs at most this many times while correcting its target to land in that range.
MAX_REDUCTION_ATTEMPTS = 4
#: ``agg`` of ``fast_simplification.simplify`` (its default is 7; lower is more careful). 5 runs as
#: fast here and lands closer to pymeshlab's geometric error (docs/mesh.md).
FAST_SIMPLIFICATION_AGGRESSIVENESS = 5.0
#: Added to ``agg`` on each retry, for inputs where a pass stalls above the target.
RETRY_AGGRESSIVENESS_STEP = 1.5
#: A face is degenerate when its area is at most this fraction of the squared bounding-box diagonal.
DEGENERATE_AREA_RATIO = 1e-14

#: Decimation back-ends of ``FaceReducer``.
FAST_SIMPLIFICATION = "fast_simplification"
PYMESHLAB = "pymeshlab"
REDUCTION_METHODS = (FAST_SIMPLIFICATION, PYMESHLAB)

#: Upstream's pymeshlab quadric edge-collapse settings (``meshing_decimation_quadric_edge_collapse``).
PYMESHLAB_QUADRIC_SETTINGS = {
    "qualitythr": 1.0,
    "preserveboundary": True,
    "boundaryweight": 3,
    "preservenormal": True,
    "preservetopology": True,
    "autoclean": True,
}

# Largest vertex count whose sorted face triples pack into one int64 (2**21 cubed is 2**63).
_MAX_PACKED_VERTEX_COUNT = 2**21 - 1

# fast_simplification keeps the mesh being simplified in module-global C++ state.
_FAST_SIMPLIFICATION_LOCK = threading.Lock()

# simplify(vertices, faces, target_face_count, attempt) -> (vertices, faces)
Simplifier = Callable[[np.ndarray, np.ndarray, int, int], tuple[np.ndarray, np.ndarray]]


# --------------------------------------------------------------------------------------------------
# Array functions
# --------------------------------------------------------------------------------------------------


def mesh_arrays(mesh: trimesh.Trimesh) -> tuple[np.ndarray, np.ndarray]:
    """The ``(vertices float64 [V, 3], faces int64 [F, 3])`` of ``mesh`` as plain arrays (no copy)."""
    if not isinstance(mesh, trimesh.Trimesh):
        raise TypeError(f"expected a trimesh.Trimesh, got {type(mesh).__name__}")
    vertices = np.asarray(mesh.vertices, dtype=np.float64).view(np.ndarray)
    faces = np.asarray(mesh.faces, dtype=np.int64).view(np.ndarray)
    return vertices, faces


def compact(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop the vertices no face references and renumber the faces (vertex order is kept)."""
    used = np.zeros(len(vertices), dtype=bool)
    used[faces.ravel()] = True
    if used.all():
        return vertices, faces
    new_index = np.cumsum(used) - 1
    return vertices[used], new_index[faces]


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


def remove_back_to_back_faces(faces: np.ndarray) -> np.ndarray:
    """Drop every face whose vertex set occurs more than once.

    Quadric collapse (``fast_simplification``) sometimes folds a thin part into a pair of opposite
    faces on the same three vertices hanging off one edge; dropping both copies restores a
    2-manifold (watertight) surface.
    """
    if len(faces) == 0:
        return faces
    corners = np.sort(faces, axis=1)
    vertex_count = int(corners[:, 2].max()) + 1
    if vertex_count <= _MAX_PACKED_VERTEX_COUNT:  # one int64 key per face: a fast 1-D unique
        keys = (corners[:, 0] * vertex_count + corners[:, 1]) * vertex_count + corners[:, 2]
        _unique, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    else:
        _unique, inverse, counts = np.unique(corners, axis=0, return_inverse=True, return_counts=True)
    once = counts[inverse.reshape(-1)] == 1
    return faces if once.all() else faces[once]


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


class FaceReducer:
    """Callable: ``FaceReducer(method)(mesh, max_facenum)`` -> mesh with at most ``max_facenum`` faces.

    Quadric edge-collapse decimation. ``method`` is ``"fast_simplification"`` (default, fast) or
    ``"pymeshlab"`` (upstream's filter and settings, slower; needs ``pip install pymeshlab``). A
    mesh with at most ``max_facenum`` faces is returned unchanged (same object); a larger one comes
    back with between ``0.95 x max_facenum`` and ``max_facenum`` faces, closed if it was closed.
    Raises ``ValueError`` for an unknown method or a ``max_facenum`` below ``MIN_MAX_FACENUM``,
    ``ImportError`` naming the package when the method's library is missing, and ``RuntimeError``
    when decimation cannot get under ``max_facenum``.
    """

    def __init__(self, method: str = FAST_SIMPLIFICATION):
        if method not in REDUCTION_METHODS:
            raise ValueError(f"unknown face reduction method {method!r}; allowed: {', '.join(REDUCTION_METHODS)}")
        self.method = method
        self._simplify: Simplifier = (
            _simplify_with_fast_simplification if method == FAST_SIMPLIFICATION else _simplify_with_pymeshlab
        )

    def __call__(self, mesh: trimesh.Trimesh, max_facenum: int = DEFAULT_MAX_FACENUM) -> trimesh.Trimesh:
        max_facenum = _check_max_facenum(max_facenum)
        vertices, faces = mesh_arrays(mesh)
        if len(faces) <= max_facenum:
            return mesh
        start = time.perf_counter()
        vertices, faces = reduce_faces(vertices, faces, max_facenum, self._simplify)
        logger.debug(
            "face reduction (%s): %d -> %d faces (max %d) in %.3f s",
            self.method, len(mesh.faces), len(faces), max_facenum, time.perf_counter() - start,
        )
        return trimesh.Trimesh(vertices, faces, process=False)


def postprocess_mesh(
    mesh: trimesh.Trimesh,
    max_facenum: int = DEFAULT_MAX_FACENUM,
    *,
    reduction_method: str = FAST_SIMPLIFICATION,
) -> trimesh.Trimesh:
    """``FloaterRemover``, ``DegenerateFaceRemover`` then ``FaceReducer(reduction_method)`` to at
    most ``max_facenum`` faces: the clean-up every shape engine's output goes through."""
    reducer = FaceReducer(reduction_method)
    max_facenum = _check_max_facenum(max_facenum)
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


# --------------------------------------------------------------------------------------------------
# Decimation
# --------------------------------------------------------------------------------------------------


def reduce_faces(
    vertices: np.ndarray, faces: np.ndarray, max_facenum: int, simplify: Simplifier
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``simplify(vertices, faces, target, attempt)`` until the face count lands in
    ``[(1 - FACE_COUNT_TOLERANCE) * max_facenum, max_facenum]``, correcting the target by the miss.

    A result with too many faces is simplified further (it becomes the next input); one with too
    few is redone from the input with a higher target. ``attempt`` (0-based) lets the back-end
    relax its settings on retries. Returns the best result within the budget (a warning is logged
    when it is below the range); raises ``RuntimeError`` when none is within it.
    """
    lowest = math.ceil((1.0 - FACE_COUNT_TOLERANCE) * max_facenum)
    source = (vertices, faces)
    target = max_facenum
    best: tuple[np.ndarray, np.ndarray] | None = None
    counts: list[int] = []
    for attempt in range(MAX_REDUCTION_ATTEMPTS):
        reduced_vertices, reduced_faces = simplify(source[0], source[1], target, attempt)
        count = len(reduced_faces)
        counts.append(count)
        if count <= max_facenum and (best is None or count > len(best[1])):
            best = (reduced_vertices, reduced_faces)
        if lowest <= count <= max_facenum:
            return reduced_vertices, reduced_faces
        if count > max_facenum:
            source = (reduced_vertices, reduced_faces)
        target = min(max(target + max_facenum - count, MIN_MAX_FACENUM), len(source[1]) - 1)
    if best is None:
        raise RuntimeError(
            f"face reduction could not get {len(faces)} faces under max_facenum={max_facenum} "
            f"(got {counts} in {MAX_REDUCTION_ATTEMPTS} attempts)"
        )
    logger.warning(
        "face reduction landed at %d faces, below the %d-%d range (attempts gave %s)",
        len(best[1]), lowest, max_facenum, counts,
    )
    return best


def _simplify_with_fast_simplification(
    vertices: np.ndarray, faces: np.ndarray, target: int, attempt: int
) -> tuple[np.ndarray, np.ndarray]:
    """Quadric collapse with fast_simplification; retries collapse harder and may move the border."""
    try:
        import fast_simplification
    except ImportError as error:  # pragma: no cover - a declared dependency
        raise ImportError(
            "FaceReducer(method='fast_simplification') needs fast-simplification: pip install fast-simplification"
        ) from error
    with _FAST_SIMPLIFICATION_LOCK:
        reduced_vertices, reduced_faces = fast_simplification.simplify(
            vertices,
            faces,
            target_count=target,
            agg=FAST_SIMPLIFICATION_AGGRESSIVENESS + RETRY_AGGRESSIVENESS_STEP * attempt,
            preserve_border=attempt < MAX_REDUCTION_ATTEMPTS - 1,
        )
    reduced_faces = remove_back_to_back_faces(np.asarray(reduced_faces, dtype=np.int64))
    return compact(np.asarray(reduced_vertices, dtype=np.float64), reduced_faces)


def _simplify_with_pymeshlab(
    vertices: np.ndarray, faces: np.ndarray, target: int, attempt: int
) -> tuple[np.ndarray, np.ndarray]:
    """Upstream's pymeshlab quadric edge collapse; the last retry may move the border."""
    try:
        import pymeshlab
    except ImportError as error:
        raise ImportError(
            "FaceReducer(method='pymeshlab') needs pymeshlab: pip install pymeshlab "
            "(or pip install 'hy3d-triton[quality]'); the default method is 'fast_simplification'"
        ) from error
    mesh_set = pymeshlab.MeshSet()
    mesh_set.add_mesh(pymeshlab.Mesh(vertex_matrix=vertices, face_matrix=faces.astype(np.int32)))
    settings = dict(PYMESHLAB_QUADRIC_SETTINGS, preserveboundary=attempt < MAX_REDUCTION_ATTEMPTS - 1)
    mesh_set.apply_filter("meshing_decimation_quadric_edge_collapse", targetfacenum=int(target), **settings)
    result = mesh_set.current_mesh()
    return compact(
        np.asarray(result.vertex_matrix(), dtype=np.float64), np.asarray(result.face_matrix(), dtype=np.int64)
    )


def _check_max_facenum(max_facenum: int) -> int:
    if isinstance(max_facenum, bool) or not isinstance(max_facenum, (int, np.integer)):
        raise ValueError(f"max_facenum must be an integer >= {MIN_MAX_FACENUM}, got {max_facenum!r}")
    if max_facenum < MIN_MAX_FACENUM:
        raise ValueError(f"max_facenum must be an integer >= {MIN_MAX_FACENUM}, got {max_facenum}")
    return int(max_facenum)
