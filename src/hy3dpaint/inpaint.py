"""Filling unpainted texels (FACTS §10): mesh-vertex propagation, then OpenCV Navier-Stokes.

1. ``vertex_inpaint``: every face corner whose texel is painted seeds its vertex's colour; the other
   corners' vertices are then repeatedly set to the inverse-squared-distance weighted average of
   their coloured neighbours, in Gauss-Seidel order, with the reference's stopping rule; finally
   each coloured vertex writes its colour into its corner texels.
2. ``ns_inpaint``: ``cv2.inpaint(uint8(255 texture), unpainted, INPAINT_RADIUS, INPAINT_NS)``.

Modes (``inpaint_texture(mode=...)``):

* ``"reference"``: NS over the whole atlas, as upstream (its cost grows with the empty atlas area).
* ``"fast"`` (default): texels farther than ``NS_GUTTER`` texels from any chart are first filled
  smoothly from the painted texels (a push-pull pyramid), then NS runs only on the unpainted texels
  inside charts and in the gutter. Chart texels match the reference except near unpainted
  holes that touch the chart border (see docs/paint.md for the measured difference).

The vertex step has two implementations with the same algorithm and order: ``"sparse"`` (default;
each pass is solved as one sparse unit-lower-triangular system in float64) and ``"loop"`` (the
reference's per-vertex loop in pure Python, slow). They differ only in floating-point summation
order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from scipy.sparse import csr_matrix
from scipy.sparse.linalg import spsolve_triangular

logger = logging.getLogger(__name__)

#: Neighbourhood radius of the OpenCV inpainting, texels.
INPAINT_RADIUS = 3
#: Fast mode: unpainted texels within this many texels of a chart are inpainted with NS; farther
#: ones are filled with the nearest painted colour.
NS_GUTTER = 8
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
    colors: np.ndarray  # float64 [V, C]
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
    if method not in VERTEX_METHODS:
        raise ValueError(f"unknown vertex inpaint method {method!r}; allowed: {', '.join(VERTEX_METHODS)}")
    texture = np.asarray(texture, dtype=np.float32)
    mask = np.asarray(mask)
    if texture.ndim != 3 or mask.shape != texture.shape[:2]:
        raise ValueError(f"texture must be [H, W, C] and mask [H, W]; got {texture.shape} and {mask.shape}")
    faces = np.asarray(faces, dtype=np.int64)
    uv_faces = faces if uv_faces is None else np.asarray(uv_faces, dtype=np.int64)
    seeds = _seed(texture, mask, len(vertices), np.asarray(uv), faces, uv_faces)
    graph = _neighbour_graph(np.asarray(vertices), faces)
    propagate = _propagate_sparse if method == "sparse" else _propagate_loop
    passes = propagate(seeds, graph)
    logger.debug("vertex inpaint: %d pending corners, %d passes", len(seeds.pending), passes)
    return write_vertex_colors(texture, mask, seeds)


def write_vertex_colors(texture: np.ndarray, mask: np.ndarray, seeds: _Seeds) -> tuple[np.ndarray, np.ndarray]:
    """Copies of ``texture`` and ``mask`` with each colored vertex's colour written to its corner texels."""
    out_texture, out_mask = texture.copy(), mask.astype(np.uint8).copy()
    write = seeds.colored[seeds.corner_vertex]
    rows, cols = seeds.rows[write], seeds.cols[write]
    out_texture[rows, cols] = seeds.colors[seeds.corner_vertex[write]].astype(np.float32)
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


def _propagate_sparse(seeds: _Seeds, graph) -> int:
    """Same passes as :func:`_propagate_loop`, each solved as one sparse triangular system."""
    pointer, neighbour, weight = graph
    pending = seeds.pending
    entries = len(pending)
    if entries == 0:
        return _count_trivial_passes()
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
        _solve_pass(seeds, pending, success, colored_at, pair_entry, pair_vertex, pair_weight, entries)
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


def _solve_pass(seeds, pending, success, colored_at, pair_entry, pair_vertex, pair_weight, entries) -> None:
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
        system = csr_matrix(
            (-w[from_pass], (k[from_pass], source_entry[from_pass])), shape=(entries, entries)
        ) + csr_matrix((np.ones(entries), (np.arange(entries), np.arange(entries))), shape=(entries, entries))
        values = spsolve_triangular(system.tocsr(), rhs, lower=True, unit_diagonal=True)
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


def push_pull_fill(image: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Smooth fill of the unknown pixels of ``image`` (float ``[H, W, C]``) from the known ones.

    Push: a pyramid of known-weighted averages (area downsampling) down to 1 pixel; pull: from the
    coarsest level up, unknown pixels take the bilinearly upsampled coarser level. Known pixels keep
    their values. Cheap (a few passes over the image) and free of the hard edges of a nearest fill.
    """
    return np.where(known[..., None], image.astype(np.float32), _pulled_unknowns(image, known))


def _pulled_unknowns(image: np.ndarray, known: np.ndarray) -> np.ndarray:
    """What :func:`push_pull_fill` gives the unknown pixels (float32 ``[H, W, C]``; known ones are
    not meaningful). At full resolution an unknown pixel always takes the upsampled coarser level,
    so the finest level is only needed for the push."""
    weight = known.astype(np.float32)
    # The weights are 0 or 1: masking first and converting once gives the same values as image * weight.
    values = np.where(known[..., None], image, 0).astype(np.float32)
    levels = []
    while min(weight.shape) > 1:
        levels.append((values, weight))
        size = (max(1, weight.shape[1] // 2), max(1, weight.shape[0] // 2))
        values = cv2.resize(values, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], -1)
        weight = cv2.resize(weight, size, interpolation=cv2.INTER_AREA)
    filled = values / np.maximum(weight, 1e-12)[..., None]
    for index, (values, weight) in reversed(list(enumerate(levels))):
        size = (weight.shape[1], weight.shape[0])
        coarse = cv2.resize(filled, size, interpolation=cv2.INTER_LINEAR).reshape(size[1], size[0], -1)
        if index == 0:
            return coarse
        filled = np.where(weight[..., None] > 0, values / np.maximum(weight, 1e-12)[..., None], coarse)
    return np.broadcast_to(filled, image.shape).astype(np.float32)  # a 1-pixel-wide image


def fill_far_from_charts(
    texture_uint8: np.ndarray, mask: np.ndarray, chart_mask: np.ndarray, gutter: int = NS_GUTTER
) -> tuple[np.ndarray, np.ndarray]:
    """Fill texels farther than ``gutter`` from any chart smoothly from the painted texels
    (:func:`push_pull_fill`). Returns (texture, mask) with those texels painted; the rest is unchanged.
    """
    painted = np.asarray(mask) > 0
    if not painted.any():
        return texture_uint8, mask
    box = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * gutter + 1, 2 * gutter + 1))
    near = cv2.dilate(np.asarray(chart_mask, dtype=np.uint8), box) > 0
    far = ~near & ~painted
    if not far.any():
        return texture_uint8, mask
    smooth = _pulled_unknowns(texture_uint8, painted)
    filled = texture_uint8.copy()
    filled[far] = np.clip(np.rint(smooth[far]), 0, 255).astype(np.uint8)
    new_mask = np.asarray(mask, dtype=np.uint8).copy()
    new_mask[far] = 255
    return filled, new_mask


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
    another device stay there (:func:`inpaint_texture_on_device`) except for the NS pass.
    """
    if mode not in INPAINT_MODES:
        raise ValueError(f"unknown inpaint mode {mode!r}; allowed: {', '.join(INPAINT_MODES)}")
    if mode == "fast" and chart_mask is None:
        raise ValueError("inpaint mode 'fast' needs chart_mask (the texels covered by the UV layout)")
    if isinstance(texture, torch.Tensor) and texture.device.type != "cpu":
        return inpaint_texture_on_device(texture, mask, vertices, uv, faces, chart_mask=chart_mask, mode=mode,
                                         vertex_method=vertex_method)
    texture, mask = (value.cpu().numpy() if isinstance(value, torch.Tensor) else value for value in (texture, mask))
    if isinstance(chart_mask, torch.Tensor):
        chart_mask = chart_mask.cpu().numpy()
    texture, mask = vertex_inpaint(texture, mask, vertices, uv, faces, method=vertex_method)
    np.multiply(texture, np.float32(255), out=texture)  # a new float32 array: scaled in place
    texture_uint8 = texture.astype(np.uint8)
    if mode == "fast":
        texture_uint8, mask = fill_far_from_charts(texture_uint8, mask, chart_mask)
    return ns_inpaint(texture_uint8, mask)


# --------------------------------------------------------------------------------------------------
# The same steps on a torch device
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
    if method not in VERTEX_METHODS:
        raise ValueError(f"unknown vertex inpaint method {method!r}; allowed: {', '.join(VERTEX_METHODS)}")
    if texture.ndim != 3 or tuple(mask.shape) != tuple(texture.shape[:2]):
        raise ValueError(f"texture must be [H, W, C] and mask [H, W]; got {list(texture.shape)} and {list(mask.shape)}")
    height, width, channels = texture.shape
    faces = np.asarray(faces, dtype=np.int64)
    rows, cols = _corner_texels(np.asarray(uv), faces, height, width)
    flat = rows * width + cols
    flat_device = torch.from_numpy(flat).to(texture.device)
    texture = texture.to(torch.float32)
    corner_colors = texture.reshape(-1, channels)[flat_device].cpu().numpy()
    corner_painted = (mask.reshape(-1)[flat_device] > 0).cpu().numpy()
    seeds = _seed_from_corners(corner_colors, corner_painted, len(vertices), faces, rows, cols)
    propagate = _propagate_sparse if method == "sparse" else _propagate_loop
    propagate(seeds, _neighbour_graph(np.asarray(vertices), faces))
    write = np.nonzero(seeds.colored[seeds.corner_vertex])[0]
    # Several corners may share a texel: keep the last one, as NumPy's assignment does.
    _, last_from_end = np.unique(flat[write][::-1], return_index=True)
    write = write[len(write) - 1 - last_from_end]
    out_texture, out_mask = texture.clone(), mask.to(torch.uint8).clone()
    index = torch.from_numpy(flat[write]).to(texture.device)
    values = torch.from_numpy(seeds.colors[seeds.corner_vertex[write]].astype(np.float32)).to(texture.device)
    out_texture.view(-1, channels)[index] = values
    out_mask.view(-1)[index] = 255
    return out_texture, out_mask


def push_pull_fill_on_device(image: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """:func:`push_pull_fill` in torch (area downsampling, bilinear upsampling) on the tensors' device.

    Matches the OpenCV version up to float rounding (and, for sizes that are not powers of two, up
    to how the area filter splits odd sizes).
    """
    weight = known.to(torch.float32)[None, None]
    values = image.to(torch.float32).permute(2, 0, 1)[None] * weight
    levels = []
    while min(weight.shape[-2:]) > 1:
        levels.append((values, weight))
        size = (max(1, weight.shape[-2] // 2), max(1, weight.shape[-1] // 2))
        values = F.interpolate(values, size=size, mode="area")
        weight = F.interpolate(weight, size=size, mode="area")
    filled = values / weight.clamp_min(1e-12)
    for values, weight in reversed(levels):
        coarse = F.interpolate(filled, size=tuple(weight.shape[-2:]), mode="bilinear", align_corners=False)
        filled = torch.where(weight > 0, values / weight.clamp_min(1e-12), coarse)
    filled = filled[0].permute(1, 2, 0)
    return torch.where(known[..., None], image.to(torch.float32), filled)


def fill_far_from_charts_on_device(
    texture_uint8: torch.Tensor, mask: torch.Tensor, chart_mask: torch.Tensor, gutter: int = NS_GUTTER
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`fill_far_from_charts` in torch on the tensors' device."""
    from hy3dpaint.edges import dilate_box

    painted = mask > 0
    if not bool(painted.any()):
        return texture_uint8, mask
    far = ~dilate_box(chart_mask.to(torch.bool), gutter) & ~painted
    if not bool(far.any()):
        return texture_uint8, mask
    smooth = push_pull_fill_on_device(texture_uint8, painted)
    filled = torch.where(far[..., None], smooth.round().clamp(0, 255).to(torch.uint8), texture_uint8)
    return filled, torch.where(far, torch.full_like(mask, 255), mask.to(torch.uint8))


def inpaint_texture_on_device(
    texture: torch.Tensor, mask: torch.Tensor, vertices: np.ndarray, uv: np.ndarray, faces: np.ndarray, *,
    chart_mask: torch.Tensor | np.ndarray | None = None, mode: str = "fast", vertex_method: str = "sparse",
) -> np.ndarray:
    """:func:`inpaint_texture` with the texture on its torch device: vertex step and (fast mode) far
    fill there, NS with OpenCV on the host (OpenCV's NS has no torch counterpart).

    ``mode="reference"`` gives the same bits as the NumPy path; ``"fast"`` differs from it only by
    the float rounding of the far fill (texels the model never samples) and what NS draws from it.
    """
    if mode not in INPAINT_MODES:
        raise ValueError(f"unknown inpaint mode {mode!r}; allowed: {', '.join(INPAINT_MODES)}")
    if mode == "fast" and chart_mask is None:
        raise ValueError("inpaint mode 'fast' needs chart_mask (the texels covered by the UV layout)")
    device = texture.device
    mask = torch.as_tensor(mask).to(device)
    texture, mask = vertex_inpaint_on_device(texture, mask, vertices, uv, faces, method=vertex_method)
    texture_uint8 = (texture * 255).to(torch.uint8)
    if mode == "fast":
        texture_uint8, mask = fill_far_from_charts_on_device(texture_uint8, mask, torch.as_tensor(chart_mask).to(device))
    return ns_inpaint(texture_uint8.cpu().numpy(), mask.cpu().numpy())
