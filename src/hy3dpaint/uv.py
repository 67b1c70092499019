"""UV unwrapping: ``mesh_uv_wrap(mesh) -> trimesh.Trimesh`` with UVs, vertices split along seams.

Two methods:

* ``"charts"`` (default, fast): faces are grouped by the axis direction their normal is closest to
  (6 directions), the labels are smoothed over the face adjacency and tiny charts are merged into a
  neighbour; each connected chart is projected on the plane of its direction (every face of a chart
  faces its direction, so no triangle flips); a chart whose boundary crosses itself (a fold) is
  split in two until none does; each chart is rotated to its minimum-area bounding rectangle; the
  charts' rasterised footprints (conservative, widened by a gutter) are packed with a skyline packer
  that tries four rotations per chart, and the scale is searched so the layout fills the unit square.
* ``"xatlas"``: ``xatlas.parametrize`` with default options, exactly as the reference (FACTS §2).

UVs are float32 in [0, 1] with v up (OBJ/trimesh convention); the result is deterministic.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np
import trimesh
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components, dijkstra
from scipy.spatial import ConvexHull, QhullError

logger = logging.getLogger(__name__)

UV_METHODS = ("charts", "xatlas")
#: Largest mesh accepted for unwrapping (faces).
MAX_UV_FACES = 2_000_000

#: Chart directions: a face joins the chart of the axis its normal is closest to.
CHART_DIRECTIONS = np.array(
    [[1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0], [0, 0, 1.0], [0, 0, -1.0]]
)
#: A face may only move to another direction's chart (smoothing, merging) if the cosine between its
#: normal and that direction exceeds this; it bounds the projection stretch to 1 / 0.2 = 5x.
MIN_PROJECTION_COS = 0.2
#: Majority-vote passes that smooth the direction labels over the face adjacency.
SMOOTHING_PASSES = 4
#: Charts with fewer faces than this are merged into a neighbouring chart when possible.
SMALL_CHART_FACES = 24
#: Charts filling less than this fraction of their minimum-area bounding rectangle (rings, C shapes)
#: are split in two, as long as they have at least MIN_SPLIT_FACES faces.
MIN_CHART_FILL = 0.5
MIN_SPLIT_FACES = 64
#: Largest number of chart splits (folds and sparse charts) before giving up.
MAX_CHART_SPLITS = 100_000

#: Texture size the gutter is designed for (texels per side).
DEFAULT_ATLAS_TEXTURE_SIZE = 2048
#: Texels (at the design texture size) per cell of the packing grid, at least; larger textures use
#: larger cells so the grid never exceeds MAX_PACKING_CELLS cells per side.
TEXELS_PER_CELL = 2
MAX_PACKING_CELLS = 1024
#: Cells of free space added around every (conservative) chart footprint: two charts end up at least
#: 2 * GUTTER_CELLS cells apart, i.e. 4 texels at a 2048 design size and 8 at 4096 (cells are
#: ``texture_size / min(texture_size / TEXELS_PER_CELL, MAX_PACKING_CELLS)`` texels wide).
GUTTER_CELLS = 1
#: First guess of the fraction of the atlas the packed footprints fill.
INITIAL_FILL = 0.62
#: Scale-search attempts of the packer; the best layout is kept.
PACKING_ATTEMPTS = 3


def mesh_uv_wrap(
    mesh: trimesh.Trimesh | trimesh.Scene,
    method: str = "charts",
    *,
    texture_size: int = DEFAULT_ATLAS_TEXTURE_SIZE,
) -> trimesh.Trimesh:
    """Unwrap ``mesh``; returns a new mesh with ``visual.uv`` (float32, [0, 1], v up).

    A ``Scene`` is flattened first. Vertices are duplicated along seams and faces re-indexed; positions
    are unchanged. ``texture_size`` (charts method) is the texture the gutter between charts is sized
    for. Raises ``ValueError`` for an empty or too large mesh or an unknown method, ``ImportError``
    when ``method="xatlas"`` and xatlas is not installed.
    """
    if method not in UV_METHODS:
        raise ValueError(f"unknown UV method {method!r}; allowed: {', '.join(UV_METHODS)}")
    if isinstance(mesh, trimesh.Scene):
        mesh = mesh.to_geometry()
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    if len(faces) == 0 or len(vertices) == 0:
        raise ValueError("cannot unwrap an empty mesh (no faces)")
    if len(faces) > MAX_UV_FACES:
        raise ValueError(f"mesh has {len(faces)} faces; at most {MAX_UV_FACES} can be unwrapped")
    if not np.isfinite(vertices).all():
        raise ValueError("mesh vertices contain NaN or infinite values")
    started = time.perf_counter()
    if method == "xatlas":
        vertex_map, new_faces, uv = _xatlas_unwrap(vertices, faces)
    else:
        if texture_size < 16:
            raise ValueError(f"texture_size must be at least 16, got {texture_size}")
        vertex_map, new_faces, uv = chart_unwrap(vertices, faces, texture_size=texture_size)
    result = trimesh.Trimesh(
        vertices=vertices[vertex_map], faces=new_faces, visual=float32_uv_visuals(uv), process=False
    )
    logger.info(
        "uv unwrap (%s): %d faces, %d -> %d vertices, utilisation %.3f, %.2f s",
        method, len(faces), len(vertices), len(vertex_map), uv_utilisation(uv, new_faces),
        time.perf_counter() - started,
    )
    return result


def float32_uv_visuals(uv: np.ndarray, material=None) -> trimesh.visual.TextureVisuals:
    """``TextureVisuals`` whose ``uv`` stays float32 (trimesh's setter would widen it to float64)."""
    visuals = trimesh.visual.TextureVisuals(uv=uv, material=material)
    visuals.vertex_attributes["uv"] = np.asarray(uv, dtype=np.float32)
    return visuals


def uv_utilisation(uv: np.ndarray, faces: np.ndarray) -> float:
    """Total UV triangle area over the unit square's area."""
    corners = np.asarray(uv, dtype=np.float64)[np.asarray(faces)]
    edge1, edge2 = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    return float(np.abs(edge1[:, 0] * edge2[:, 1] - edge1[:, 1] * edge2[:, 0]).sum() / 2)


#: Triangles per chunk when counting overlapping texels (bounds the memory of the check).
_OVERLAP_CHUNK_TRIANGLES = 20_000


def count_overlapping_texels(uv: np.ndarray, faces: np.ndarray, size: int) -> int:
    """Texels of a ``size`` x ``size`` atlas whose centre lies strictly inside two or more UV
    triangles. Points on an edge belong to no triangle, so triangles sharing an edge never count;
    a valid layout gives 0."""
    claims = np.zeros(size * size, dtype=np.int32)
    corners_all = np.asarray(uv, dtype=np.float64)[np.asarray(faces)] * size
    for start in range(0, len(corners_all), _OVERLAP_CHUNK_TRIANGLES):
        corners = corners_all[start : start + _OVERLAP_CHUNK_TRIANGLES]
        low = np.clip(np.floor(corners.min(axis=1) - 0.5), 0, size - 1).astype(np.int64)
        high = np.clip(np.ceil(corners.max(axis=1) - 0.5), 0, size - 1).astype(np.int64)
        width, height = high[:, 0] - low[:, 0] + 1, high[:, 1] - low[:, 1] + 1
        count = width * height
        triangle = np.repeat(np.arange(len(corners)), count)
        local = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
        col = low[triangle, 0] + local % width[triangle]
        row = low[triangle, 1] + local // width[triangle]
        a, b, c = corners[triangle, 0], corners[triangle, 1], corners[triangle, 2]
        sign = np.sign((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))
        inside = sign != 0
        for p, q in ((a, b), (b, c), (c, a)):
            inside &= sign * ((q[:, 0] - p[:, 0]) * (row + 0.5 - p[:, 1]) - (q[:, 1] - p[:, 1]) * (col + 0.5 - p[:, 0])) > 1e-9
        claims += np.bincount(row[inside] * size + col[inside], minlength=size * size).astype(np.int32)
    return int((claims > 1).sum())


def _xatlas_unwrap(vertices: np.ndarray, faces: np.ndarray):
    try:
        import xatlas
    except ImportError as error:  # optional dependency
        raise ImportError("method='xatlas' needs the xatlas package: pip install xatlas==0.0.9") from error
    vertex_map, new_faces, uv = xatlas.parametrize(vertices, faces)
    return vertex_map.astype(np.int64), new_faces.astype(np.int64), uv


# --------------------------------------------------------------------------------------------------
# Segmentation into charts
# --------------------------------------------------------------------------------------------------


@dataclass
class _Charts:
    face_chart: np.ndarray  # [F] chart id of every face
    direction: np.ndarray  # [C] index into CHART_DIRECTIONS


def _face_geometry(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    corners = vertices[faces]
    cross = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    doubled_area = np.linalg.norm(cross, axis=1)
    normals = cross / np.maximum(doubled_area, 1e-300)[:, None]
    return normals, doubled_area / 2


def _face_adjacency(faces: np.ndarray) -> np.ndarray:
    """Pairs of faces sharing an edge used by exactly two faces (manifold edges), ``[P, 2]``."""
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    owner = np.repeat(np.arange(len(faces)), 3)
    order = np.lexsort((edges[:, 1], edges[:, 0]))
    edges, owner = edges[order], owner[order]
    same = np.all(edges[1:] == edges[:-1], axis=1)
    starts = np.nonzero(np.r_[True, ~same])[0]
    counts = np.diff(np.r_[starts, len(edges)])
    pairs = starts[counts == 2]
    return np.stack([owner[pairs], owner[pairs + 1]], axis=1)


def _neighbour_table(adjacency: np.ndarray, face_count: int) -> np.ndarray:
    """``[F, 3]`` neighbour faces (-1 where missing); manifold faces have at most three."""
    table = np.full((face_count, 3), -1, dtype=np.int64)
    both = np.concatenate([adjacency, adjacency[:, ::-1]])
    both = both[np.lexsort((both[:, 1], both[:, 0]))]
    first = np.searchsorted(both[:, 0], both[:, 0], side="left")
    slot = np.arange(len(both)) - first
    keep = slot < 3
    table[both[keep, 0], slot[keep]] = both[keep, 1]
    return table


def _components(labels: np.ndarray, adjacency: np.ndarray) -> np.ndarray:
    same = labels[adjacency[:, 0]] == labels[adjacency[:, 1]]
    pairs = adjacency[same]
    count = len(labels)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(count, count))
    return connected_components(graph, directed=False)[1]


def segment_charts(normals: np.ndarray, adjacency: np.ndarray, areas: np.ndarray, neighbours: np.ndarray) -> _Charts:
    """Direction labels, smoothed, split into connected charts, with tiny charts merged."""
    face_count = len(normals)
    cosines = normals @ CHART_DIRECTIONS.T
    cosines[areas <= 0] = 1.0  # degenerate faces may join any chart
    labels = np.argmax(cosines, axis=1)
    rows = np.arange(face_count)
    for _ in range(SMOOTHING_PASSES):
        around = np.where(neighbours >= 0, labels[neighbours], -1)
        first_pair = (around[:, 0] >= 0) & ((around[:, 0] == around[:, 1]) | (around[:, 0] == around[:, 2]))
        second_pair = (around[:, 1] >= 0) & (around[:, 1] == around[:, 2])
        majority = np.where(first_pair, around[:, 0], np.where(second_pair, around[:, 1], -1))
        allowed = (majority >= 0) & (majority != labels) & (cosines[rows, np.maximum(majority, 0)] > MIN_PROJECTION_COS)
        labels = np.where(allowed, majority, labels)
    charts = _components(labels, adjacency)
    labels = _merge_small_charts(labels, charts, adjacency, cosines)
    charts = _components(labels, adjacency)
    direction = np.zeros(charts.max() + 1, dtype=np.int64)
    direction[charts] = labels
    return _Charts(face_chart=charts, direction=direction)


def _merge_small_charts(labels, charts, adjacency, cosines) -> np.ndarray:
    """Relabel charts with fewer than SMALL_CHART_FACES faces to the neighbour chart sharing most edges."""
    sizes = np.bincount(charts)
    crossing = adjacency[charts[adjacency[:, 0]] != charts[adjacency[:, 1]]]
    if len(crossing) == 0:
        return labels
    pairs = np.concatenate([crossing, crossing[:, ::-1]])
    small = sizes[charts[pairs[:, 0]]] < SMALL_CHART_FACES
    pairs = pairs[small]
    if len(pairs) == 0:
        return labels
    # Count shared edges per (small chart, neighbour label), largest first, lowest label on ties.
    key_chart, key_label = charts[pairs[:, 0]], labels[pairs[:, 1]]
    combos, counts = np.unique(np.stack([key_chart, key_label], axis=1), axis=0, return_counts=True)
    order = np.lexsort((combos[:, 1], -counts, combos[:, 0]))
    combos = combos[order]
    labels = labels.copy()
    faces_of = np.argsort(charts, kind="stable")
    bounds = np.searchsorted(charts[faces_of], np.arange(len(sizes) + 1))
    done = np.zeros(len(sizes), dtype=bool)
    for chart, label in combos:
        if done[chart]:
            continue
        members = faces_of[bounds[chart] : bounds[chart + 1]]
        if np.all(cosines[members, label] > MIN_PROJECTION_COS):
            labels[members] = label
            done[chart] = True
    return labels


# --------------------------------------------------------------------------------------------------
# Projection, folds, orientation
# --------------------------------------------------------------------------------------------------


def _projection_bases() -> np.ndarray:
    """``[D, 2, 3]`` in-plane axes (u, v) with u x v = direction, so charts keep counter-clockwise faces."""
    bases = []
    for direction in CHART_DIRECTIONS:
        helper = np.array([0.0, 0.0, 1.0]) if abs(direction[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
        u = np.cross(helper, direction)
        u /= np.linalg.norm(u)
        bases.append([u, np.cross(direction, u)])
    return np.asarray(bases)


_BASES = _projection_bases()


def _local_chart(vertices: np.ndarray, faces: np.ndarray, members: np.ndarray, direction: int):
    """(local faces [n, 3], projected points [m, 2]) of the chart made of faces ``members``."""
    vertex_ids, local_faces = np.unique(faces[members], return_inverse=True)
    return local_faces.reshape(-1, 3), vertices[vertex_ids] @ _BASES[direction].T


def _boundary_edges(chart_faces: np.ndarray) -> np.ndarray:
    """Directed edges used by exactly one face (chart boundaries), ``[B, 2]``."""
    directed = chart_faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    span = int(chart_faces.max()) + 1
    keys = directed.min(axis=1) * span + directed.max(axis=1)
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    return directed[counts[inverse] != 2]


def _has_crossing(points: np.ndarray, edges: np.ndarray) -> bool:
    """Whether two boundary edges that share no vertex properly cross (the projection folds)."""
    if len(edges) < 4:
        return False
    start, end = points[edges[:, 0]], points[edges[:, 1]]
    low_x, high_x = np.minimum(start[:, 0], end[:, 0]), np.maximum(start[:, 0], end[:, 0])
    # Sweep in x: an edge's candidates are the later edges (by low x) starting before it ends.
    order = np.argsort(low_x, kind="stable")
    last = np.searchsorted(low_x[order], high_x[order], side="right")
    counts = last - np.arange(len(order)) - 1
    first = np.repeat(np.arange(len(order)), counts)
    second = first + 1 + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
    a, b = order[first], order[second]
    shares = (
        (edges[a, 0] == edges[b, 0]) | (edges[a, 0] == edges[b, 1]) | (edges[a, 1] == edges[b, 0]) | (edges[a, 1] == edges[b, 1])
    )
    a, b = a[~shares], b[~shares]

    def orient(p, q, r):
        return (q[:, 0] - p[:, 0]) * (r[:, 1] - p[:, 1]) - (q[:, 1] - p[:, 1]) * (r[:, 0] - p[:, 0])

    p1, p2, q1, q2 = start[a], end[a], start[b], end[b]
    return bool(np.any((orient(p1, p2, q1) * orient(p1, p2, q2) < 0) & (orient(q1, q2, p1) * orient(q1, q2, p2) < 0)))


def _min_area_rotation(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Rotation ``[2, 2]`` (applied as ``points @ R``) to the minimum-area bounding rectangle, and its area."""
    try:
        hull = points[ConvexHull(points).vertices]
    except (QhullError, ValueError):  # fewer than 3 points or all collinear
        extent = np.ptp(points, axis=0) if len(points) else np.zeros(2)
        return np.eye(2), float(extent[0] * extent[1])
    edges = np.roll(hull, -1, axis=0) - hull
    angles = np.arctan2(edges[:, 1], edges[:, 0])
    cos, sin = np.cos(angles), np.sin(angles)
    x = hull[:, 0][None, :] * cos[:, None] + hull[:, 1][None, :] * sin[:, None]
    y = -hull[:, 0][None, :] * sin[:, None] + hull[:, 1][None, :] * cos[:, None]
    areas = np.ptp(x, axis=1) * np.ptp(y, axis=1)
    best = int(np.argmin(areas))
    c, s = cos[best], sin[best]
    return np.array([[c, -s], [s, c]]), float(areas[best])


def _bisect(members: np.ndarray, centroids: np.ndarray, neighbours: np.ndarray, local: np.ndarray) -> np.ndarray:
    """Split a chart's faces in two: nearer to one or the other end of a long path through the chart.

    The first end is the extreme face along the chart's main axis, the second the face farthest from
    it in the face graph. ``local`` is a scratch array of -1s, one entry per face (restored on return).
    """
    count = len(members)
    local[members] = np.arange(count)
    adjacent = neighbours[members]
    around = np.where(adjacent >= 0, local[adjacent], -1)  # -1 marks a missing neighbour
    local[members] = -1
    rows, slots = np.nonzero(around >= 0)
    graph = coo_matrix((np.ones(len(rows)), (rows, around[rows, slots])), shape=(count, count)).tocsr()
    centred = centroids - centroids.mean(axis=0)
    along = centred @ np.linalg.svd(centred, full_matrices=False)[2][0]
    first = int(np.argmin(along))
    distance = dijkstra(graph, directed=False, indices=first, unweighted=True)
    reachable = np.isfinite(distance)
    if not reachable.all():  # not edge-connected: separate what the first end reaches
        return ~reachable
    second = int(np.argmax(distance))
    _, _, sources = dijkstra(graph, directed=False, indices=[first, second], unweighted=True, min_only=True, return_predecessors=True)
    half = sources == second
    if half.all() or not half.any():
        half = np.arange(count) >= count // 2
    return half


def _refine_charts(vertices, faces, charts: _Charts, neighbours: np.ndarray):
    """Split charts that fold over themselves or fill little of their bounding rectangle.

    Returns (face_chart [F], projection [C, 2, 3]): the rows of ``projection`` map a chart's 3-D
    points to its 2-D points, already rotated to the minimum-area rectangle.
    """
    order = np.argsort(charts.face_chart, kind="stable")
    bounds = np.searchsorted(charts.face_chart[order], np.arange(len(charts.direction) + 1))
    queue = deque((order[bounds[c] : bounds[c + 1]], int(charts.direction[c])) for c in range(len(charts.direction)))
    local = np.full(len(faces), -1, dtype=np.int64)
    face_chart = np.zeros(len(faces), dtype=np.int64)
    projections = []
    splits = 0
    while queue:
        members, direction = queue.popleft()
        chart_faces, points = _local_chart(vertices, faces, members, direction)
        split = len(members) > 1 and _has_crossing(points, _boundary_edges(chart_faces))
        if not split:
            rotation, rectangle = _min_area_rotation(points)
            area = float(_triangle_areas(points, chart_faces).sum())
            split = area < MIN_CHART_FILL * rectangle and len(members) >= MIN_SPLIT_FACES
        if split:
            splits += 1
            if splits > MAX_CHART_SPLITS:
                raise RuntimeError(f"uv unwrap: more than {MAX_CHART_SPLITS} chart splits; the mesh is too folded")
            half = _bisect(members, points[chart_faces].mean(axis=1), neighbours, local)
            queue.append((members[~half], direction))
            queue.append((members[half], direction))
            continue
        face_chart[members] = len(projections)
        projections.append(rotation.T @ _BASES[direction])
    logger.debug("uv: %d charts after %d splits", len(projections), splits)
    return face_chart, np.asarray(projections)


def _split_vertices(faces: np.ndarray, face_chart: np.ndarray, vertex_count: int):
    """One vertex per (chart, original vertex): (vertex map, chart of each new vertex, new faces)."""
    keys = face_chart[:, None] * vertex_count + faces
    unique, inverse = np.unique(keys.reshape(-1), return_inverse=True)
    return unique % vertex_count, unique // vertex_count, inverse.reshape(-1, 3)


# --------------------------------------------------------------------------------------------------
# Packing
# --------------------------------------------------------------------------------------------------


@dataclass
class _Footprint:
    bitmap: np.ndarray  # bool [rows, cols], row 0 = lowest cells
    origin: np.ndarray  # [2] cell coordinates of the chart points' (0, 0) inside the bitmap


def _boundary_loops(edges: np.ndarray) -> list[np.ndarray]:
    """Chain directed boundary edges into closed vertex loops."""
    successor: dict[int, list[int]] = {}
    for start, end in edges.tolist():
        successor.setdefault(start, []).append(end)
    loops = []
    for first in sorted(successor):
        while successor.get(first):
            loop, current = [first], successor[first].pop()
            while current != first and successor.get(current):
                loop.append(current)
                current = successor[current].pop()
            loops.append(np.asarray(loop, dtype=np.int64))
    return loops


def _footprints(points, chart_loops, chart_members, scale) -> list[_Footprint]:
    """Conservative footprint of each chart at ``scale`` cells per unit, widened by the gutter."""
    margin = 2 + GUTTER_CELLS
    kernel = np.ones((3 + 2 * GUTTER_CELLS, 3 + 2 * GUTTER_CELLS), np.uint8)
    result = []
    for loops, members in zip(chart_loops, chart_members):
        cells = points[members] * scale
        low = cells.min(axis=0)
        size = np.ceil(cells.max(axis=0) - low).astype(int) + 2 * margin + 1
        bitmap = np.zeros((size[1], size[0]), np.uint8)
        origin = margin - low
        polygons = [np.rint((points[loop] * scale + origin - 0.5) * 16).astype(np.int32) for loop in loops]
        cv2.fillPoly(bitmap, polygons, 1, lineType=cv2.LINE_8, shift=4)
        cv2.polylines(bitmap, polygons, True, 1, lineType=cv2.LINE_8, shift=4)
        bitmap = cv2.dilate(bitmap, kernel) > 0
        result.append(_Footprint(bitmap=bitmap, origin=origin))
    return result


def _rotate_point(point: np.ndarray, quarter_turns: int, rows: int, cols: int) -> np.ndarray:
    """Where a cell-space point of a ``rows`` x ``cols`` bitmap lands after ``np.rot90(bitmap, k)``."""
    x, y = point[..., 0], point[..., 1]
    for _ in range(quarter_turns % 4):
        x, y = y, cols - x
        rows, cols = cols, rows
    return np.stack([x, y], axis=-1)


def _profiles(bitmap: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    occupied = bitmap.any(axis=0)
    bottom = np.argmax(bitmap, axis=0)
    top = bitmap.shape[0] - np.argmax(bitmap[::-1], axis=0)
    return occupied, bottom, top


def _skyline_pack(footprints: list[_Footprint], width: int):
    """Place footprints on a skyline of ``width`` cells; returns (placements, height) or None if too wide.

    Each placement is (x, y, quarter_turns). Charts go largest first; each takes the rotation and
    position with the lowest resulting top, then the least wasted area below it, then the lowest x.
    """
    skyline = np.zeros(width, dtype=np.int64)
    order = sorted(range(len(footprints)), key=lambda i: (-int(footprints[i].bitmap.sum()), i))
    placements: list[tuple[int, int, int] | None] = [None] * len(footprints)
    for index in order:
        best = None
        for turns in range(4):
            bitmap = np.rot90(footprints[index].bitmap, turns)
            cols = bitmap.shape[1]
            if cols > width:
                continue
            occupied, bottom, top = _profiles(bitmap)
            bottom, top = bottom[occupied], top[occupied]
            windows = np.lib.stride_tricks.sliding_window_view(skyline, cols)[:, occupied]
            base = np.maximum((windows - bottom).max(axis=1), 0)
            new_top = base + top.max()
            lowest = np.nonzero(new_top == new_top.min())[0]
            waste = (base[lowest, None] + bottom - windows[lowest]).sum(axis=1)
            pick = int(np.argmin(waste))
            position = int(lowest[pick])
            score = (int(new_top[position]), int(waste[pick]), turns)
            if best is None or score < best[0]:
                best = (score, position, int(base[position]), turns, occupied, top)
        if best is None:
            return None
        _, x, y, turns, occupied, top = best
        span = skyline[x : x + len(occupied)]
        span[occupied] = np.maximum(span[occupied], y + top)
        placements[index] = (x, y, turns)
    return placements, int(skyline.max())


def _pack_charts(points, faces, vertex_chart, boundary, chart_count, grid_cells):
    """Scale-searched skyline packing; returns UVs in [0, 1] for every split vertex."""
    order = np.argsort(vertex_chart, kind="stable")
    bounds = np.searchsorted(vertex_chart[order], np.arange(chart_count + 1))
    chart_members = [order[bounds[c] : bounds[c + 1]] for c in range(chart_count)]
    edge_chart = vertex_chart[boundary[:, 0]]
    edge_order = np.argsort(edge_chart, kind="stable")
    edge_bounds = np.searchsorted(edge_chart[edge_order], np.arange(chart_count + 1))
    chart_loops = [_boundary_loops(boundary[edge_order[edge_bounds[c] : edge_bounds[c + 1]]]) for c in range(chart_count)]
    area = float(_triangle_areas(points, faces).sum())
    scale = np.sqrt(INITIAL_FILL * grid_cells**2 / max(area, 1e-30))
    best = None
    for _ in range(PACKING_ATTEMPTS):
        footprints = _footprints(points, chart_loops, chart_members, scale)
        packed = _skyline_pack(footprints, grid_cells)
        if packed is None:
            scale *= 0.8
            continue
        placements, height = packed
        side = max(grid_cells, height)
        utilisation = area * scale**2 / side**2
        if best is None or utilisation > best[0]:
            best = (utilisation, scale, footprints, placements, side)
        scale *= float(np.sqrt(grid_cells / max(height, 1))) * (0.995 if height > grid_cells else 1.0)
    if best is None:
        raise RuntimeError("uv unwrap: charts could not be packed")
    _, scale, footprints, placements, side = best
    uv = np.zeros_like(points)
    for members, footprint, placement in zip(chart_members, footprints, placements):
        x, y, turns = placement
        rows, cols = footprint.bitmap.shape
        cells = points[members] * scale + footprint.origin
        uv[members] = (_rotate_point(cells, turns, rows, cols) + (x, y)) / side
    return np.clip(uv, 0.0, 1.0)


def _triangle_areas(points: np.ndarray, faces: np.ndarray) -> np.ndarray:
    corners = points[faces]
    edge1, edge2 = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    return np.abs(edge1[:, 0] * edge2[:, 1] - edge1[:, 1] * edge2[:, 0]) / 2


def chart_unwrap(vertices: np.ndarray, faces: np.ndarray, *, texture_size: int = DEFAULT_ATLAS_TEXTURE_SIZE):
    """The "charts" method on arrays: returns (vertex map [V'], faces [F, 3], uv [V', 2] float64)."""
    normals, areas = _face_geometry(vertices, faces)
    adjacency = _face_adjacency(faces)
    neighbours = _neighbour_table(adjacency, len(faces))
    charts = segment_charts(normals, adjacency, areas, neighbours)
    face_chart, projection = _refine_charts(vertices, faces, charts, neighbours)
    vertex_map, vertex_chart, new_faces = _split_vertices(faces, face_chart, len(vertices))
    points = np.einsum("vij,vj->vi", projection[vertex_chart], vertices[vertex_map])
    boundary = _boundary_edges(new_faces)
    grid_cells = max(8, min(MAX_PACKING_CELLS, texture_size // TEXELS_PER_CELL))
    uv = _pack_charts(points, new_faces, vertex_chart, boundary, len(projection), grid_cells)
    return vertex_map, new_faces, uv
