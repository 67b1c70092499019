"""Mesh operations both stages use: face reduction (quadric edge collapse) and the array helpers it needs.

``FaceReducer`` (upstream's name) decimates a ``trimesh.Trimesh`` to at most ``max_facenum`` faces,
landing in ``[0.95, 1.0] x max_facenum``; ``fast_simplification`` by default, pymeshlab (upstream's
filter and settings) as a quality option. The shape stage runs it last in ``postprocess_mesh``; the
texture stage's remesh step runs it before UV unwrapping. Everything works on the vertex/face arrays in
memory, no temporary files; per-vertex and per-face attributes (colours, UVs) are not carried over.
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

#: Default face budget of ``FaceReducer`` (upstream's, and the contract's).
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
# Decimation
# --------------------------------------------------------------------------------------------------


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
        max_facenum = check_max_facenum(max_facenum)
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


def check_max_facenum(max_facenum: int) -> int:
    """``max_facenum`` as an int; ``ValueError`` unless it is an integer of at least ``MIN_MAX_FACENUM``."""
    if isinstance(max_facenum, bool) or not isinstance(max_facenum, (int, np.integer)):
        raise ValueError(f"max_facenum must be an integer >= {MIN_MAX_FACENUM}, got {max_facenum!r}")
    if max_facenum < MIN_MAX_FACENUM:
        raise ValueError(f"max_facenum must be an integer >= {MIN_MAX_FACENUM}, got {max_facenum}")
    return int(max_facenum)
