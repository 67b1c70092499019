"""The ``MESH`` input of ``hy3d_texture``: parse a GLB, OBJ or PLY file in memory, check it, normalise it.

The mesh ends up as the shape stage's meshes are: one triangle mesh, vertices welded, in the shape
stage's world frame (glTF: +Y up, front towards +Z, +X to the right of the front view; no rotation is
applied, so a mesh must come in that orientation), centred on its bounding box and scaled uniformly so
that its largest side spans ``[-NORMALISED_HALF_EXTENT, NORMALISED_HALF_EXTENT]``, inside the
``[-1.01, 1.01]^3`` volume the shape stage extracts from. It is decimated with the shape stage's
``FaceReducer`` only when it has more faces than ``FACE_COUNT``. Colours, UVs, normals and materials of
the file are ignored (the paint stage makes its own); small separate parts are kept (no floater removal:
they are the author's); a triangle repeated on the same three vertices (either winding) is kept once, and
zero-area triangles are dropped.

Every problem with the file raises :class:`~hy3d_client.contract.ContractError` naming ``MESH``.
"""

from __future__ import annotations

import io
import logging
import re
from typing import Any

import numpy as np
from hy3d_client import contract

from .logs import timed
from .stages import MeshArrays
from .tensors import InputGetter

logger = logging.getLogger(__name__)

#: Half of the largest side of a normalised mesh (world units; the shape volume is [-1.01, 1.01]^3).
NORMALISED_HALF_EXTENT = 1.0
#: Longest PLY header read to check its element counts before parsing, in bytes.
MAX_PLY_HEADER_BYTES = 64 * 1024
#: Loader of each format (``trimesh.load``'s ``file_type``).
_TRIMESH_FILE_TYPES = {"glb": "glb", "obj": "obj", "ply": "ply"}
_PLY_ELEMENT = re.compile(rb"^element\s+(\w+)\s+(\d+)\s*$")
#: Largest vertex count whose face keys ``(a * n + b) * n + c`` fit in an int64.
_MAX_PACKED_VERTEX_COUNT = 2_097_151


def read_mesh_file(get: InputGetter, name: str = contract.MESH_INPUT) -> bytes:
    """The required BYTES ``[1]`` input ``name``: the bytes of one mesh file, within ``MAX_MESH_FILE_BYTES``."""
    tensor = get(name)
    if tensor is None:
        raise contract.ContractError(name, "required input is missing: the bytes of a GLB, OBJ or PLY file")
    if not isinstance(tensor, np.ndarray) or tensor.dtype != np.object_:
        got = tensor.dtype if isinstance(tensor, np.ndarray) else type(tensor).__name__
        raise contract.ContractError(name, f"expected dtype BYTES, got {got}")
    if tensor.size != 1:
        raise contract.ContractError(name, f"expected one file (shape [1]), got shape {list(tensor.shape)}")
    data = tensor.reshape(-1)[0]
    if isinstance(data, str):  # a BYTES tensor sent as JSON text arrives as str in some clients
        data = data.encode("utf-8")
    contract.mesh_file_format(data, name)
    return bytes(data)


def parse_mesh_file(data: bytes, field: str = contract.MESH_INPUT) -> tuple[np.ndarray, np.ndarray]:
    """``(vertices float64 [V, 3], faces int64 [F, 3])`` of every triangle mesh in the file, node
    transforms applied (GLB scenes), concatenated.

    Points and lines are ignored; polygons are triangulated. Raises ``ContractError`` naming ``field``
    when the file cannot be parsed, holds no triangle, is over ``MAX_MESH_FILE_FACES`` /
    ``MAX_MESH_FILE_VERTICES``, has a non-finite coordinate or a face index out of range.
    """
    import trimesh

    file_format = contract.mesh_file_format(data, field)
    if file_format == "ply":
        _check_ply_header(data, field)
    try:
        scene = trimesh.load(io.BytesIO(data), file_type=_TRIMESH_FILE_TYPES[file_format], force="scene",
                             skip_materials=True, process=False)
    except Exception as error:  # trimesh raises ValueError, KeyError, IndexError, struct.error... on bad files
        raise contract.ContractError(field, f"cannot be parsed as {file_format.upper()}: "
                                            f"{type(error).__name__}: {error}") from None
    vertices, faces = _scene_triangles(scene, trimesh, field)
    if len(faces) == 0:
        raise contract.ContractError(field, f"the {file_format.upper()} file holds no triangles")
    check_mesh_arrays(vertices, faces, field)
    return vertices, faces


def check_mesh_arrays(vertices: np.ndarray, faces: np.ndarray, field: str = contract.MESH_INPUT) -> None:
    """Raise ``ContractError`` naming ``field`` unless the mesh is within the limits, finite and indexed right."""
    if len(faces) > contract.MAX_MESH_FILE_FACES:
        raise contract.ContractError(field, f"the mesh has {len(faces)} triangles; at most "
                                            f"{contract.MAX_MESH_FILE_FACES} allowed")
    if len(vertices) > contract.MAX_MESH_FILE_VERTICES:
        raise contract.ContractError(field, f"the mesh has {len(vertices)} vertices; at most "
                                            f"{contract.MAX_MESH_FILE_VERTICES} allowed")
    if len(faces) == 0 or len(vertices) == 0:
        raise contract.ContractError(field, "the mesh is empty (no triangles)")
    if not np.isfinite(vertices).all():
        raise contract.ContractError(field, "every vertex coordinate must be finite (found NaN or infinity)")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise contract.ContractError(field, f"every face index must lie in [0, {len(vertices) - 1}]")


def unique_faces(faces: np.ndarray) -> np.ndarray:
    """``faces`` without repeats of the same three vertices (in any order); first occurrences, in order."""
    corners = np.sort(faces, axis=1)
    vertex_count = int(corners[:, 2].max()) + 1 if len(corners) else 0
    if vertex_count <= _MAX_PACKED_VERTEX_COUNT:  # one int64 key per face: a fast 1-D unique
        keys = (corners[:, 0] * vertex_count + corners[:, 1]) * vertex_count + corners[:, 2]
        _unique, first = np.unique(keys, return_index=True)
    else:
        _unique, first = np.unique(corners, axis=0, return_index=True)
    return faces if len(first) == len(faces) else faces[np.sort(first)]


def normalise_vertices(vertices: np.ndarray) -> np.ndarray:
    """Centre on the bounding-box centre, scale uniformly so the largest half-side is ``NORMALISED_HALF_EXTENT``."""
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    half_extent = float((high - low).max()) / 2.0
    centred = vertices - (low + high) / 2.0
    return centred * (NORMALISED_HALF_EXTENT / half_extent) if half_extent > 0 else centred


def prepare_mesh(data: bytes, face_count: int, field: str = contract.MESH_INPUT) -> MeshArrays:
    """The mesh file ``data`` as ``paint_pbr`` takes it: parsed, checked, welded, cleaned of degenerate
    faces, normalised, and reduced to at most ``face_count`` faces when it has more.

    Returns FP32 ``[V, 3]`` vertices and INT32 ``[F, 3]`` faces. Raises ``ContractError`` naming ``field``.
    """
    import trimesh

    from hy3dcore.mesh import FaceReducer, compact
    from hy3dshape.postprocessors import DegenerateFaceRemover, merge_coincident_vertices

    with timed(logger, "mesh parsing"):
        vertices, faces = parse_mesh_file(data, field)
    input_faces = len(faces)
    vertices, faces = compact(*merge_coincident_vertices(vertices, faces))  # files split vertices at UV seams
    faces = unique_faces(faces)
    mesh = DegenerateFaceRemover()(trimesh.Trimesh(vertices, faces, process=False))
    if len(mesh.faces) == 0:
        raise contract.ContractError(field, "every triangle of the mesh is degenerate (zero area)")
    mesh = trimesh.Trimesh(normalise_vertices(np.asarray(mesh.vertices, dtype=np.float64)), mesh.faces,
                           process=False)
    if len(mesh.faces) > face_count:
        with timed(logger, f"mesh reduction to {face_count} faces"):
            try:
                mesh = FaceReducer()(mesh, face_count)
            except (RuntimeError, ValueError) as error:  # decimation found nothing to keep (odd topology)
                raise contract.ContractError(field, f"the mesh cannot be reduced to {face_count} faces: {error}") from None
        # Decimation moves vertices a little: back onto the normalised bounds.
        mesh = trimesh.Trimesh(normalise_vertices(np.asarray(mesh.vertices, dtype=np.float64)), mesh.faces,
                               process=False)
    logger.info("input mesh: %d triangles -> %d vertices, %d faces", input_faces, len(mesh.vertices),
                len(mesh.faces))
    return MeshArrays(np.ascontiguousarray(mesh.vertices, dtype=np.float32),
                      np.ascontiguousarray(mesh.faces, dtype=np.int32))


def _scene_triangles(scene: Any, trimesh: Any, field: str) -> tuple[np.ndarray, np.ndarray]:
    """Every triangle mesh of ``scene`` in world coordinates, concatenated; counts checked as they add up."""
    vertex_parts: list[np.ndarray] = []
    face_parts: list[np.ndarray] = []
    vertex_total = face_total = 0
    for node in scene.graph.nodes_geometry:
        transform, geometry_name = scene.graph.get(node)
        geometry = scene.geometry.get(geometry_name)
        if not isinstance(geometry, trimesh.Trimesh) or len(geometry.faces) == 0:
            continue
        faces = np.asarray(geometry.faces, dtype=np.int64)
        vertices = np.asarray(geometry.vertices, dtype=np.float64)
        face_total += len(faces)
        vertex_total += len(vertices)
        if face_total > contract.MAX_MESH_FILE_FACES or vertex_total > contract.MAX_MESH_FILE_VERTICES:
            check_mesh_arrays(np.zeros((vertex_total, 3)), np.zeros((face_total, 3), np.int64), field)
        if not np.isfinite(vertices).all():  # before the transform, which would turn inf into NaN
            check_mesh_arrays(vertices, faces, field)
        transform = np.asarray(transform, dtype=np.float64)
        vertices = vertices @ transform[:3, :3].T + transform[:3, 3]
        if np.linalg.det(transform[:3, :3]) < 0:  # a mirroring node turns the triangles inside out
            faces = faces[:, ::-1]
        face_parts.append(faces + (vertex_total - len(vertices)))
        vertex_parts.append(vertices)
    if not face_parts:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    return np.concatenate(vertex_parts), np.concatenate(face_parts)


def _check_ply_header(data: bytes, field: str) -> None:
    """Refuse a PLY whose header declares more vertices or faces than allowed, before anything is allocated."""
    end = data.find(b"end_header", 0, MAX_PLY_HEADER_BYTES)
    if end < 0:
        raise contract.ContractError(field, f"cannot be parsed as PLY: no end_header in its first "
                                            f"{MAX_PLY_HEADER_BYTES} bytes")
    limits = {b"vertex": contract.MAX_MESH_FILE_VERTICES, b"face": contract.MAX_MESH_FILE_FACES}
    for line in data[:end].splitlines():
        match = _PLY_ELEMENT.match(line.strip())
        if match and match.group(1) in limits and int(match.group(2)) > limits[match.group(1)]:
            kind = "vertices" if match.group(1) == b"vertex" else "faces"
            raise contract.ContractError(field, f"the PLY header declares {int(match.group(2))} {kind}; at most "
                                                f"{limits[match.group(1)]} allowed")
