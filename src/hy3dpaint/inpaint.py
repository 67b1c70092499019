"""Filling unpainted texels (FACTS §10): mesh-vertex propagation, then OpenCV Navier-Stokes.

1. ``vertex_inpaint``: every face corner whose texel is painted seeds its vertex's colour; the other
   corners' vertices are then repeatedly set to the inverse-squared-distance weighted average of
   their coloured neighbours, in Gauss-Seidel order, with the reference's stopping rule; finally
   each coloured vertex writes its colour into its corner texels.
2. ``ns_inpaint``: ``cv2.inpaint(uint8(255 texture), unpainted, INPAINT_RADIUS, INPAINT_NS)``.

Modes (``inpaint_texture(mode=...)``):

* ``"reference"``: NS over the whole atlas, as upstream (its cost grows with the empty atlas area).
* ``"fast"`` (default): NS runs only on the unpainted texels inside charts, within ``NS_GUTTER``
  texels of a chart and within ``NS_HOLE_GUTTER`` texels of an unpainted chart texel; the texels
  beyond are filled first (``fill_far_from_charts``): a band of ``NEAREST_BAND`` texels takes the
  colour of the nearest painted texel, which is what NS extends outwards from a painted border,
  and the rest of the empty atlas is that fill blurred (smooth, so it compresses well). Chart
  texels match the reference, up to rare texels of holes that reach a chart border (see
  docs/paint.md for the measured difference).

Materials baked together (``bake_materials``: albedo and MR) share one mask, so ``inpaint_textures``
builds the mesh graph, the vertex propagation's passes and the far-fill plan once for all of them.

The vertex step has two implementations with the same algorithm and order: ``"sparse"`` (default;
each pass is solved as one sparse unit-lower-triangular system in float64) and ``"loop"`` (the
reference's per-vertex loop in pure Python, slow). They differ only in floating-point summation
order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.linalg import spsolve_triangular

logger = logging.getLogger(__name__)

#: Neighbourhood radius of the OpenCV inpainting, texels.
INPAINT_RADIUS = 3
#: Fast mode: unpainted texels within this many texels of a chart are inpainted with NS...
NS_GUTTER = 1
#: ... and so are those within this many texels of an unpainted chart texel: NS fills a hole that
#: reaches a chart's border partly from outside the chart, where the reference's NS runs too. The
#: rest is filled first by ``fill_far_from_charts``. With 32, the chart texels of the benchmark
#: mesh are bit-identical to the reference (docs/paint.md).
NS_HOLE_GUTTER = 32
#: Fast mode: far texels within this many texels of the NS region take the colour of the nearest
#: painted texel. NS reads ``INPAINT_RADIUS`` texels around every texel it fills, so a wider band
#: changes nothing NS sees.
NEAREST_BAND = INPAINT_RADIUS + 1
#: Fast mode: the empty atlas beyond the band is the nearest-colour fill averaged over blocks of
#: ``2 ** FAR_BLUR_LEVELS`` texels and interpolated back (no hard edges between charts' colours).
FAR_BLUR_LEVELS = 4
#: Materials whose far fill and NS run at once (threads; OpenCV releases the GIL).
NS_THREADS = 2
#: Distances below this are clamped in the inverse-squared-distance weights.
MIN_EDGE_LENGTH = 1e-4
#: Passes of the vertex propagation start with this "patience"; a pass that colours nothing new
#: costs one, a pass that changes the uncoloured count earns one; it stops at zero.
INITIAL_PATIENCE = 2
#: Safety bound on the number of vertex-propagation passes.
MAX_PASSES = 100_000

INPAINT_MODES = ("fast", "reference")
VERTEX_METHODS = ("sparse", "loop")


@dataclass
class _Seeds:
    colors: np.ndarray  # float64 [V, C]: the channels of every material, side by side
    colored: np.ndarray  # bool [V]
    pending: np.ndarray  # int64 [E]: vertices of the corners whose texel is unpainted, in corner order
    rows: np.ndarray  # int64 [F * 3]: texel row of every corner
    cols: np.ndarray  # int64 [F * 3]
    corner_vertex: np.ndarray  # int64 [F * 3]


def _corner_texels(uv: np.ndarray, uv_faces: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Texel (row, col) of every face corner: round((1 - v)(H - 1)), round(u (W - 1)), half away from 0."""
    corner_uv = uv[uv_faces.reshape(-1)]
    cols = np.floor(corner_uv[:, 0].astype(np.float32) * np.float32(width - 1) + np.float32(0.5))
    rows = np.floor((1.0 - corner_uv[:, 1].astype(np.float64)) * (height - 1) + 0.5)
    return (
        np.clip(rows, 0, height - 1).astype(np.int64),
        np.clip(cols, 0, width - 1).astype(np.int64),
    )


def _seed(texture, mask, vertex_count, uv, faces, uv_faces) -> _Seeds:
    height, width = mask.shape
    rows, cols = _corner_texels(uv, uv_faces, height, width)
    return _seed_from_corners(texture[rows, cols], mask[rows, cols] > 0, vertex_count, faces, rows, cols)


def _seed_from_corners(corner_colors, corner_painted, vertex_count, faces, rows, cols) -> _Seeds:
    """Seeds from every corner's texel colour [F * 3, C] and painted flag [F * 3]."""
    corner_vertex = faces.reshape(-1).astype(np.int64)
    colors = np.zeros((vertex_count, corner_colors.shape[1]), dtype=np.float64)
    colored = np.zeros(vertex_count, dtype=bool)
    colors[corner_vertex[corner_painted]] = corner_colors[corner_painted]  # last corner wins
    colored[corner_vertex[corner_painted]] = True
    return _Seeds(colors, colored, corner_vertex[~corner_painted], rows, cols, corner_vertex)


def _neighbour_graph(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR lists (row pointer, neighbour, weight): edges a->b, b->c, c->a of every face, in face order."""
    source = faces.reshape(-1).astype(np.int64)
    target = faces[:, [1, 2, 0]].reshape(-1).astype(np.int64)
    order = np.argsort(source, kind="stable")
    source, target = source[order], target[order]
    pointer = np.zeros(len(vertices) + 1, dtype=np.int64)
    np.add.at(pointer, source + 1, 1)
    pointer = np.cumsum(pointer)
    positions = vertices.astype(np.float32)
    distance = np.sqrt(((positions[source] - positions[target]) ** 2).sum(axis=1, dtype=np.float32))
    weight = 1.0 / np.maximum(distance.astype(np.float64), MIN_EDGE_LENGTH) ** 2
    return pointer, target, weight


def _check_method(method: str) -> None:
    if method not in VERTEX_METHODS:
        raise ValueError(f"unknown vertex inpaint method {method!r}; allowed: {', '.join(VERTEX_METHODS)}")


def _check_shapes(textures: Sequence, mask) -> None:
    if not textures:
        raise ValueError("need at least one texture to inpaint")
    for texture in textures:
        if texture.ndim != 3 or tuple(mask.shape) != tuple(texture.shape[:2]):
            raise ValueError(f"texture must be [H, W, C] and mask [H, W]; got {list(texture.shape)} and {list(mask.shape)}")


def _propagate(seeds: _Seeds, vertices: np.ndarray, faces: np.ndarray, method: str, groups: Sequence[int]) -> None:
    graph = _neighbour_graph(np.asarray(vertices), faces)
    passes = _propagate_sparse(seeds, graph, groups) if method == "sparse" else _propagate_loop(seeds, graph)
    logger.debug("vertex inpaint: %d pending corners, %d passes", len(seeds.pending), passes)


def vertex_inpaint(
    texture: np.ndarray,
    mask: np.ndarray,
    vertices: np.ndarray,
    uv: np.ndarray,
    faces: np.ndarray,
    uv_faces: np.ndarray | None = None,
    *,
    method: str = "sparse",
) -> tuple[np.ndarray, np.ndarray]:
    """Propagate painted colours over the mesh graph into unpainted corners' texels.

    ``texture`` float ``[H, W, C]``, ``mask`` uint8 ``[H, W]`` (> 0 = painted), ``vertices [V, 3]``
    (the reference uses the normalised mesh in input axes; only distances matter), ``uv [V', 2]``
    (v up) with ``uv_faces`` (default ``faces``). Returns a new (texture float32, mask uint8 0/255).
    """
    (texture,), mask = vertex_inpaint_textures([texture], mask, vertices, uv, faces, uv_faces, method=method)
    return texture, mask


def vertex_inpaint_textures(
    textures: Sequence[np.ndarray],
    mask: np.ndarray,
    vertices: np.ndarray,
    uv: np.ndarray,
    faces: np.ndarray,
    uv_faces: np.ndarray | None = None,
    *,
    method: str = "sparse",
) -> tuple[list[np.ndarray], np.ndarray]:
    """:func:`vertex_inpaint` of several textures painted under one ``mask``.

    The mesh graph and the passes (which vertex is coloured when) depend only on the mask, so they
    are computed once; every texture gets the values its own ``vertex_inpaint`` would give.
    Returns (new float32 textures, mask uint8 0/255).
    """
    _check_method(method)
    textures = [np.asarray(texture, dtype=np.float32) for texture in textures]
    mask = np.asarray(mask)
    _check_shapes(textures, mask)
    faces = np.asarray(faces, dtype=np.int64)
    uv_faces = faces if uv_faces is None else np.asarray(uv_faces, dtype=np.int64)
    height, width = mask.shape
    rows, cols = _corner_texels(np.asarray(uv), uv_faces, height, width)
    corner_colors = np.concatenate([texture[rows, cols] for texture in textures], axis=1)
    seeds = _seed_from_corners(corner_colors, mask[rows, cols] > 0, len(vertices), faces, rows, cols)
    groups = [texture.shape[2] for texture in textures]
    _propagate(seeds, vertices, faces, method, groups)
    results = [write_vertex_colors(texture, mask, seeds, channels)
               for texture, channels in zip(textures, _channel_slices(groups))]
    return [texture for texture, _ in results], results[0][1]


def _channel_slices(groups: Sequence[int]) -> list[slice]:
    ends = np.cumsum(groups).tolist()
    return [slice(end - count, end) for end, count in zip(ends, groups)]


def write_vertex_colors(
    texture: np.ndarray, mask: np.ndarray, seeds: _Seeds, channels: slice | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Copies of ``texture`` and ``mask`` with each colored vertex's colour (its ``channels`` of the
    seeds, default all) written to its corner texels."""
    out_texture, out_mask = texture.copy(), mask.astype(np.uint8).copy()
    write = seeds.colored[seeds.corner_vertex]
    rows, cols = seeds.rows[write], seeds.cols[write]
    colors = seeds.colors if channels is None else seeds.colors[:, channels]
    out_texture[rows, cols] = colors[seeds.corner_vertex[write]].astype(np.float32)
    out_mask[rows, cols] = 255
    return out_texture, out_mask


def _next_patience(patience: int, uncolored: int, previous: int) -> int:
    return patience - 1 if uncolored == previous else patience + 1


def _propagate_loop(seeds: _Seeds, graph) -> int:
    """The reference's per-vertex Gauss-Seidel passes, in pure Python (slow; for checks and benchmarks)."""
    pointer, neighbour, weight = graph
    colors = [list(row) for row in seeds.colors]
    colored = seeds.colored.tolist()
    pending = seeds.pending.tolist()
    lists = [
        list(zip(neighbour[pointer[v] : pointer[v + 1]].tolist(), weight[pointer[v] : pointer[v + 1]].tolist()))
        for v in range(len(colored))
    ]
    channels = seeds.colors.shape[1]
    patience, previous, passes = INITIAL_PATIENCE, 0, 0
    while patience > 0 and passes < MAX_PASSES:
        uncolored = 0
        for vertex in pending:
            total, accumulated = 0.0, [0.0] * channels
            for other, w in lists[vertex]:
                if colored[other]:
                    color = colors[other]
                    for channel in range(channels):
                        accumulated[channel] += color[channel] * w
                    total += w
            if total > 0:
                colors[vertex] = [value / total for value in accumulated]
                colored[vertex] = True
            else:
                uncolored += 1
        patience = _next_patience(patience, uncolored, previous)
        previous = uncolored
        passes += 1
    seeds.colors[:] = np.asarray(colors, dtype=np.float64).reshape(seeds.colors.shape)
    seeds.colored[:] = colored
    return passes


def _propagate_sparse(seeds: _Seeds, graph, groups: Sequence[int] | None = None) -> int:
    """Same passes as :func:`_propagate_loop`, each solved as one sparse triangular system.

    ``groups``: channel counts of the materials side by side in ``seeds.colors``; each material's
    channels are solved on their own, so its numbers do not depend on the other materials.
    """
    pointer, neighbour, weight = graph
    pending = seeds.pending
    entries = len(pending)
    if entries == 0:
        return _count_trivial_passes()
    slices = _channel_slices(groups or [seeds.colors.shape[1]])
    # Entry-neighbour pairs: entry k (vertex pending[k]) sees neighbour j with weight w.
    degree = pointer[pending + 1] - pointer[pending]
    pair_entry = np.repeat(np.arange(entries), degree)
    pair_offset = np.arange(pair_entry.size) - np.repeat(np.cumsum(degree) - degree, degree)
    pair_edge = pointer[pending][pair_entry] + pair_offset
    pair_vertex, pair_weight = neighbour[pair_edge], weight[pair_edge]
    has_pairs = degree > 0
    pair_starts = (np.cumsum(degree) - degree)[has_pairs]
    never = np.iinfo(np.int64).max
    patience, previous, passes = INITIAL_PATIENCE, 0, 0
    while patience > 0 and passes < MAX_PASSES:
        first_success, success = _successes(seeds.colored, pending, pair_entry, pair_vertex, has_pairs, pair_starts, never)
        colored_at = first_success[pair_vertex] < pair_entry  # neighbour coloured when the entry is visited
        _solve_pass(seeds, pending, success, colored_at, pair_entry, pair_vertex, pair_weight, entries, slices)
        seeds.colored[pending[success]] = True
        uncolored = int(entries - success.sum())
        patience = _next_patience(patience, uncolored, previous)
        previous = uncolored
        passes += 1
    return passes


def _count_trivial_passes() -> int:
    patience, previous, passes = INITIAL_PATIENCE, 0, 0
    while patience > 0:
        patience = _next_patience(patience, 0, previous)
        passes += 1
    return passes


def _successes(colored, pending, pair_entry, pair_vertex, has_pairs, pair_starts, never):
    """Which entries of a pass find a coloured neighbour, and when each vertex is first coloured.

    ``first_success[v]`` is -1 for vertices coloured before the pass, else the first successful entry
    of ``v`` in this pass (``never`` if none). Solved as a monotone fixed point.
    """
    entries = len(pending)
    first_success = np.where(colored, -1, never).astype(np.int64)
    success = np.zeros(entries, dtype=bool)
    while True:
        earliest = np.full(entries, never, dtype=np.int64)
        if pair_vertex.size:
            earliest[has_pairs] = np.minimum.reduceat(first_success[pair_vertex], pair_starts)
        new_success = earliest < np.arange(entries)
        if np.array_equal(new_success, success):
            return first_success, success
        success = new_success
        hits = np.nonzero(success)[0]
        candidate = np.full(len(first_success), never, dtype=np.int64)
        np.minimum.at(candidate, pending[hits], hits)
        first_success = np.minimum(first_success, candidate)


def _solve_pass(seeds, pending, success, colored_at, pair_entry, pair_vertex, pair_weight, entries, slices) -> None:
    """Values of one pass: y_k = sum_j w_kj value_j(at k) / sum_j w_kj over neighbours coloured at k."""
    use = colored_at & success[pair_entry]
    k, j, w = pair_entry[use], pair_vertex[use], pair_weight[use]
    total = np.zeros(entries)
    np.add.at(total, k, w)
    w = w / total[k]
    # The value j holds at entry k: its last successful entry before k in this pass, else its old colour.
    successful = np.nonzero(success)[0]
    key_sorted = pending[successful] * (entries + 1) + successful  # sorted by (vertex, entry)
    order = np.argsort(key_sorted, kind="stable")
    key_sorted, successful = key_sorted[order], successful[order]
    position = np.searchsorted(key_sorted, j * (entries + 1) + k, side="left") - 1
    from_pass = position >= 0
    from_pass[from_pass] = key_sorted[position[from_pass]] // (entries + 1) == j[from_pass]
    source_entry = np.where(from_pass, successful[np.maximum(position, 0)], -1)
    rhs = np.zeros((entries, seeds.colors.shape[1]))
    old = ~from_pass
    np.add.at(rhs, k[old], seeds.colors[j[old]] * w[old, None])
    if from_pass.any():
        system = (csr_matrix((-w[from_pass], (k[from_pass], source_entry[from_pass])), shape=(entries, entries))
                  + csr_matrix((np.ones(entries), (np.arange(entries), np.arange(entries))), shape=(entries, entries))
                  ).tocsr()
        values = np.concatenate([spsolve_triangular(system, np.ascontiguousarray(rhs[:, part]), lower=True,
                                                    unit_diagonal=True) for part in slices], axis=1)
    else:
        values = rhs
    # Each vertex keeps the value of its last successful entry.
    last = np.full(len(seeds.colored), -1, dtype=np.int64)
    np.maximum.at(last, pending[success], np.nonzero(success)[0])
    updated = np.nonzero(last >= 0)[0]
    seeds.colors[updated] = values[last[updated]]


def ns_inpaint(texture_uint8: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``cv2.inpaint`` (Navier-Stokes, radius ``INPAINT_RADIUS``) of texels where ``mask == 0``."""
    unpainted = np.where(np.asarray(mask) > 0, 0, 255).astype(np.uint8)
    return cv2.inpaint(texture_uint8, unpainted, INPAINT_RADIUS, cv2.INPAINT_NS)


# --------------------------------------------------------------------------------------------------
# Fast mode: the empty atlas away from the charts
# --------------------------------------------------------------------------------------------------


@dataclass
class FarFill:
    """Where and from which texels the fast mode fills the atlas away from the charts.

    Depends only on the painted mask and the chart mask, so materials baked together share it.
    ``nearest``: ``[H, W, 2]`` (x, y) of the nearest painted texel (L2) of every texel, a
    ``cv2.remap`` map; ``band``, ``beyond``: uint8 ``[H, W]``, 1 where the nearest colour / the
    blurred fill is written; ``mask``: the painted mask with both set (NS fills what stays 0).
    """

    nearest: np.ndarray
    band: np.ndarray
    beyond: np.ndarray
    mask: np.ndarray

    @classmethod
    def plan(cls, mask: np.ndarray, chart_mask: np.ndarray, gutter: int = NS_GUTTER,
             hole_gutter: int = NS_HOLE_GUTTER, band: int = NEAREST_BAND) -> FarFill | None:
        """The plan for ``mask`` (uint8, > 0 painted) and ``chart_mask`` (bool): NS keeps the unpainted
        texels within ``gutter`` of a chart and within ``hole_gutter`` of an unpainted chart texel.
        ``None`` when there is nothing to fill (no painted texel, or no texel beyond those)."""
        painted = np.asarray(mask) > 0
        if not painted.any():
            return None
        charts = np.asarray(chart_mask, dtype=bool)
        near = _dilate(charts.view(np.uint8), gutter) | _dilate((charts & ~painted).view(np.uint8), hole_gutter)
        far = (near == 0) & ~painted
        if not far.any():
            return None
        _, labels = cv2.distanceTransformWithLabels((~painted).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_5,
                                                    labelType=cv2.DIST_LABEL_PIXEL)
        # Every painted texel is its own label; map labels back to texel coordinates.
        height, width = painted.shape
        texel = np.flatnonzero(painted)
        coordinate_type = np.int16 if max(height, width) <= np.iinfo(np.int16).max else np.float32
        coordinates = np.zeros((int(labels.max()) + 1, 2), dtype=coordinate_type)
        label = labels.reshape(-1)[texel]
        coordinates[label, 0] = texel % width
        coordinates[label, 1] = texel // width
        # One (x, y) pair per label, gathered as a single 32- or 64-bit word (a 1-D take is fastest).
        word = np.int32 if coordinate_type == np.int16 else np.int64
        nearest = np.take(coordinates.view(word).reshape(-1), labels).view(coordinate_type).reshape(height, width, 2)
        in_band = far & (_dilate(near.view(np.uint8), band) > 0)
        new_mask = np.asarray(mask, dtype=np.uint8).copy()
        new_mask[far] = 255
        return cls(nearest=nearest, band=in_band.view(np.uint8),
                   beyond=(far & ~in_band).view(np.uint8), mask=new_mask)

    def apply(self, texture_uint8: np.ndarray) -> np.ndarray:
        """A copy of ``texture_uint8 [H, W, C]`` with the far texels filled."""
        height, width = self.mask.shape
        texture_uint8 = np.ascontiguousarray(texture_uint8)
        nearest = cv2.remap(texture_uint8, self.nearest, None, cv2.INTER_NEAREST).reshape(texture_uint8.shape)
        filled = texture_uint8.copy()
        cv2.copyTo(nearest, self.band, filled)
        if self.beyond.any():
            block = 2**FAR_BLUR_LEVELS
            coarse = cv2.resize(nearest, (max(1, width // block), max(1, height // block)), interpolation=cv2.INTER_AREA)
            smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR).reshape(texture_uint8.shape)
            cv2.copyTo(smooth, self.beyond, filled)
        return filled


def _dilate(image: np.ndarray, radius: int) -> np.ndarray:
    """Box dilation with a ``(2 radius + 1)^2`` square (uint8)."""
    if radius <= 0:
        return image.copy()
    return cv2.dilate(image, cv2.getStructuringElement(cv2.MORPH_RECT, (2 * radius + 1, 2 * radius + 1)))


def fill_far_from_charts(
    texture_uint8: np.ndarray, mask: np.ndarray, chart_mask: np.ndarray, gutter: int = NS_GUTTER,
    hole_gutter: int = NS_HOLE_GUTTER,
) -> tuple[np.ndarray, np.ndarray]:
    """Fill the unpainted texels NS does not need (see :class:`FarFill`).

    Returns (texture, mask) with those texels painted; the rest is unchanged.
    """
    plan = FarFill.plan(mask, chart_mask, gutter, hole_gutter)
    if plan is None:
        return texture_uint8, mask
    return plan.apply(texture_uint8), plan.mask


# --------------------------------------------------------------------------------------------------
# The whole fill
# --------------------------------------------------------------------------------------------------


def inpaint_texture(
    texture: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor,
    vertices: np.ndarray,
    uv: np.ndarray,
    faces: np.ndarray,
    *,
    chart_mask: np.ndarray | torch.Tensor | None = None,
    mode: str = "fast",
    vertex_method: str = "sparse",
) -> np.ndarray:
    """Fill every unpainted texel: vertex propagation, then NS; returns uint8 ``[H, W, C]``.

    ``texture`` float ``[H, W, C]`` in [0, 1] and ``mask`` uint8 ``[H, W]`` come from the bake;
    ``vertices``, ``uv`` (v up) and ``faces`` describe the mesh (uv indexed like the vertices).
    ``chart_mask`` (bool ``[H, W]``, texels the UV layout covers) is required in ``"fast"`` mode.
    The float texture of the reference is this result / 255.

    NumPy arrays (and CPU tensors) are filled with NumPy/OpenCV, the fastest on the CPU. Tensors on
    another device keep the vertex step there (:func:`vertex_inpaint_on_device`); the 8-bit texture
    then goes to the host for the far fill and NS (OpenCV's NS has no torch counterpart).
    """
    result = inpaint_textures({"texture": texture}, mask, vertices, uv, faces, chart_mask=chart_mask, mode=mode,
                              vertex_method=vertex_method)
    return result["texture"]


def inpaint_textures(
    textures: Mapping[str, np.ndarray | torch.Tensor],
    mask: np.ndarray | torch.Tensor,
    vertices: np.ndarray,
    uv: np.ndarray,
    faces: np.ndarray,
    *,
    chart_mask: np.ndarray | torch.Tensor | None = None,
    mode: str = "fast",
    vertex_method: str = "sparse",
    on_filled: Callable[[str], None] | None = None,
    torch_vertex_step: bool | None = None,
) -> dict[str, np.ndarray]:
    """:func:`inpaint_texture` of materials baked under one ``mask`` (``bake_materials``' albedo and
    MR): the vertex graph and passes and the far-fill plan are computed once; each material gets
    what its own ``inpaint_texture`` call would give. ``on_filled(name)`` is called as each
    material is finished. Returns ``{name: uint8 [H, W, C]}``.

    ``torch_vertex_step``: run the vertex step on the tensors' device (:func:`vertex_inpaint_on_device`;
    same results); by default only for tensors off the CPU.
    """
    if torch_vertex_step is None:
        torch_vertex_step = any(isinstance(value, torch.Tensor) and value.device.type != "cpu"
                                for value in textures.values())
    if mode not in INPAINT_MODES:
        raise ValueError(f"unknown inpaint mode {mode!r}; allowed: {', '.join(INPAINT_MODES)}")
    if mode == "fast" and chart_mask is None:
        raise ValueError("inpaint mode 'fast' needs chart_mask (the texels covered by the UV layout)")
    names = list(textures)
    values = [textures[name] for name in names]
    if torch_vertex_step:
        device = next((value.device for value in values if isinstance(value, torch.Tensor)), torch.device("cpu"))
        filled, mask = vertex_inpaint_textures_on_device(
            [torch.as_tensor(value).to(device) for value in values], torch.as_tensor(mask).to(device),
            vertices, uv, faces, method=vertex_method)
        eight_bit = [(texture * 255).to(torch.uint8).cpu().numpy() for texture in filled]
        mask = mask.cpu().numpy()
    else:
        arrays = [value.cpu().numpy() if isinstance(value, torch.Tensor) else value for value in values]
        mask = mask.cpu().numpy() if isinstance(mask, torch.Tensor) else mask
        filled, mask = vertex_inpaint_textures(arrays, mask, vertices, uv, faces, method=vertex_method)
        eight_bit = []
        for texture in filled:
            np.multiply(texture, np.float32(255), out=texture)  # a new float32 array: scaled in place
            eight_bit.append(texture.astype(np.uint8))
        del filled
    plan = None
    if mode == "fast":
        plan = FarFill.plan(mask, chart_mask.cpu().numpy() if isinstance(chart_mask, torch.Tensor) else chart_mask)

    def finish(texture: np.ndarray) -> np.ndarray:
        return ns_inpaint(texture, mask) if plan is None else ns_inpaint(plan.apply(texture), plan.mask)

    result = {}
    # OpenCV releases the GIL: the materials' NS runs side by side (wall time; the CPU time is the same).
    with ThreadPoolExecutor(max_workers=max(1, min(NS_THREADS, len(names)))) as pool:
        for name, filled_texture in zip(names, pool.map(finish, eight_bit)):
            result[name] = filled_texture
            if on_filled is not None:
                on_filled(name)
    return result


# --------------------------------------------------------------------------------------------------
# The vertex step on a torch device
# --------------------------------------------------------------------------------------------------


def vertex_inpaint_on_device(
    texture: torch.Tensor, mask: torch.Tensor, vertices: np.ndarray, uv: np.ndarray, faces: np.ndarray, *,
    method: str = "sparse",
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`vertex_inpaint` for tensors on any device; same numbers.

    Only the corner texels cross to the host (the propagation runs on the mesh graph, a few
    thousand vertices, where NumPy is fastest); the texture stays on its device. Returns new
    (texture float32, mask uint8 0/255) tensors.
    """
    (texture,), mask = vertex_inpaint_textures_on_device([texture], mask, vertices, uv, faces, method=method)
    return texture, mask


def vertex_inpaint_textures_on_device(
    textures: Sequence[torch.Tensor], mask: torch.Tensor, vertices: np.ndarray, uv: np.ndarray, faces: np.ndarray, *,
    method: str = "sparse",
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """:func:`vertex_inpaint_textures` for tensors on any device (see :func:`vertex_inpaint_on_device`)."""
    _check_method(method)
    _check_shapes(textures, mask)
    height, width = mask.shape
    faces = np.asarray(faces, dtype=np.int64)
    rows, cols = _corner_texels(np.asarray(uv), faces, height, width)
    flat = rows * width + cols
    device = textures[0].device
    flat_device = torch.from_numpy(flat).to(device)
    textures = [texture.to(torch.float32) for texture in textures]
    corner_colors = np.concatenate(
        [texture.reshape(-1, texture.shape[2])[flat_device].cpu().numpy() for texture in textures], axis=1)
    corner_painted = (mask.reshape(-1)[flat_device] > 0).cpu().numpy()
    seeds = _seed_from_corners(corner_colors, corner_painted, len(vertices), faces, rows, cols)
    groups = [texture.shape[2] for texture in textures]
    _propagate(seeds, vertices, faces, method, groups)
    write = np.nonzero(seeds.colored[seeds.corner_vertex])[0]
    # Several corners may share a texel: keep the last one, as NumPy's assignment does.
    _, last_from_end = np.unique(flat[write][::-1], return_index=True)
    write = write[len(write) - 1 - last_from_end]
    index = torch.from_numpy(flat[write]).to(device)
    out_textures = []
    for texture, channels in zip(textures, _channel_slices(groups)):
        out = texture.clone()
        values = seeds.colors[:, channels][seeds.corner_vertex[write]].astype(np.float32)
        out.view(-1, texture.shape[2])[index] = torch.from_numpy(values).to(device)
        out_textures.append(out)
    out_mask = mask.to(torch.uint8).clone()
    out_mask.view(-1)[index] = 255
    return out_textures, out_mask
