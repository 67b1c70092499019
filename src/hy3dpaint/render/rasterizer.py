"""Triangle rasterizer in plain torch (no custom extension), same arithmetic on CPU and CUDA.

It reproduces the reference rasterizer (FACTS §5) operation by operation in float32:

* screen mapping ``x_s = (x/w * 0.5 + 0.5) * (W - 1) + 0.5`` (same for y with H), so NDC -1 is the
  centre of the first pixel and row 0 is NDC y = -1; depth ``z_s = z/w * 0.49999 + 0.5``;
* every pixel of a triangle's bounding box (from ``int(min)`` while ``< max + 1``) is tested at its
  centre ``(px + 0.5, py + 0.5)``; it is covered when all three barycentrics lie in ``[0, 1]``
  (edges inclusive, so both triangles of a shared edge claim it); zero-area triangles are skipped
  and fragments in front of the near plane (``z_s < 0``) are dropped;
* z-buffer key ``trunc(z_s * 2^18) * (2^31 - 1) + face + 1``, smallest wins (``scatter_reduce``
  with ``amin``), so faces in the same depth bucket resolve to the lower face index (stored as the
  order-equivalent ``bucket << 31 | face + 1``);
* output barycentrics are recomputed at the pixel centre, divided by each vertex's w and
  renormalised.

On the CPU the per-pixel loops are compiled with numba (``cpu_kernels``: the same operations, one
pixel at a time). On other devices the work is vectorised over (triangle, pixel row) pairs, each
limited to the triangle's extent on the row, processed in chunks of at most ``PIXELS_PER_CHUNK``
candidate pixels so memory stays bounded whatever the triangle sizes. Every elementwise
operation is a separate torch kernel (no fused multiply-add), so CPU and CUDA give the same bits.
Anti-aliasing is a no-op in the reference's raster mode and is not provided.
"""

from __future__ import annotations

import numpy as np
import torch

#: Largest number of (triangle, pixel) candidate pairs evaluated at once; bounds peak memory
#: (roughly 100 bytes per pair).
PIXELS_PER_CHUNK = 1 << 22
#: Covered pixels whose barycentrics / interpolated attributes are evaluated at once (bounds the
#: temporaries; the results do not depend on it).
PIXELS_PER_PASS = 1 << 18
#: Triangles at most this many pixels wide are scanned over their bounding box; wider ones row by
#: row over their extent on each row.
NARROW_TRIANGLE_PIXELS = 16
#: Depth quantisation of the z-buffer key: ``trunc(z_s * DEPTH_QUANTIZATION)``.
DEPTH_QUANTIZATION = 1 << 18
#: The reference's key is ``bucket * (2^31 - 1) + face + 1``; since ``face + 1 < 2^31 - 1`` and
#: ``bucket >= 0``, ``(bucket << KEY_FACE_BITS) | (face + 1)`` orders keys identically and lets the
#: face be read back with a mask instead of a 64-bit division.
KEY_FACE_BITS = 31
#: Scale of NDC depth into the z-buffer's screen depth (``z_s = z/w * DEPTH_SCALE + 0.5``).
DEPTH_SCALE = 0.49999
#: Run the numba loops of ``cpu_kernels`` for tensors on the CPU (the tests switch it off to compare
#: them with the torch code bit for bit).
USE_CPU_KERNELS = True
_FACE_MASK = (1 << KEY_FACE_BITS) - 1
_EMPTY_KEY = ((1 << 32) - 1) << KEY_FACE_BITS  # above any real key; its face bits read as 0


class Rasterization:
    """Result of :func:`rasterize` for one image.

    ``face_ids``: int32 ``[H, W]``, face index + 1, 0 = background.
    ``barycentrics``: float32 ``[H, W, 3]``, perspective-corrected weights of the hit face's
    vertices (zeros on background); computed on first use (face-id renders do not need them).
    """

    def __init__(self, face_ids: torch.Tensor, screen: torch.Tensor, w: torch.Tensor, faces: torch.Tensor) -> None:
        self.face_ids = face_ids
        self._inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = (screen, w, faces)
        self._covered: tuple[torch.Tensor, torch.Tensor] | None = None

    def covered_barycentrics(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(flat indices [P] of the covered pixels in row-major order, their barycentrics [P, 3]);
        computed on first use."""
        if self._covered is None:
            screen, w, faces = self._inputs
            self._covered = _covered_barycentrics(screen, w, faces, self.face_ids)
            self._inputs = None
        return self._covered

    @property
    def barycentrics(self) -> torch.Tensor:
        height, width = self.face_ids.shape
        pixel, weights = self.covered_barycentrics()
        result = torch.zeros((height * width, 3), dtype=torch.float32, device=self.face_ids.device)
        if pixel.numel():
            result[pixel] = weights
        return result.view(height, width, 3)

    @property
    def mask(self) -> torch.Tensor:
        """Bool ``[H, W]``: pixels covered by some face."""
        return self.face_ids > 0


def screen_coordinates(clip_positions: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Map clip-space vertices ``[V, 4]`` to screen space ``[V, 3]`` (x_s, y_s, z_s), float32."""
    clip = clip_positions.to(torch.float32)
    w = clip[:, 3]
    x = ((clip[:, 0] / w) * 0.5 + 0.5) * float(width - 1) + 0.5
    y = ((clip[:, 1] / w) * 0.5 + 0.5) * float(height - 1) + 0.5
    z = (clip[:, 2] / w) * DEPTH_SCALE + 0.5
    return torch.stack([x, y, z], dim=1)


def _signed_area2(ax, ay, bx, by, cx, cy):
    """Twice the signed area of (a, b, c), in the reference's operation order."""
    return (cx - ax) * (by - ay) - (bx - ax) * (cy - ay)


def _barycentrics(ax, ay, bx, by, cx, cy, area, px, py):
    """Barycentrics of pixel centres (px, py) in float32; alpha is formed in float64 as the reference."""
    beta_area = (cx - ax) * (py - ay) - (px - ax) * (cy - ay)
    gamma_area = (px - ax) * (by - ay) - (bx - ax) * (py - ay)
    inverse_area = 1.0 / area
    beta = beta_area * inverse_area
    gamma = gamma_area * inverse_area
    alpha = (1.0 - beta.to(torch.float64) - gamma.to(torch.float64)).to(torch.float32)
    return alpha, beta, gamma


def rasterize(
    clip_positions: torch.Tensor,
    faces: torch.Tensor,
    resolution: tuple[int, int] | int,
    *,
    pixels_per_chunk: int = PIXELS_PER_CHUNK,
) -> Rasterization:
    """Rasterize triangles with a z-buffer.

    ``clip_positions``: float ``[V, 4]`` clip-space vertices; ``faces``: int ``[F, 3]`` vertex indices;
    ``resolution``: ``(H, W)`` or one int for a square image. Runs on the tensors' device.
    Raises ``ValueError`` on malformed inputs.
    """
    height, width = (resolution, resolution) if isinstance(resolution, int) else map(int, resolution)
    if clip_positions.ndim != 2 or clip_positions.shape[1] != 4:
        raise ValueError(f"clip_positions must be [V, 4], got {list(clip_positions.shape)}")
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must be [F, 3], got {list(faces.shape)}")
    if height < 1 or width < 1:
        raise ValueError(f"resolution must be positive, got {height}x{width}")
    device = clip_positions.device
    faces = faces.to(device=device, dtype=torch.int64)
    screen = screen_coordinates(clip_positions, height, width)
    keys = torch.full((height * width,), _EMPTY_KEY, dtype=torch.int64, device=device)
    if faces.shape[0] and uses_cpu_kernels(device):
        from hy3dpaint.render import cpu_kernels

        cpu_kernels.depth_keys(screen.contiguous().numpy(), faces.contiguous().numpy(), height, width, keys.numpy(),
                               np.float32(DEPTH_QUANTIZATION), KEY_FACE_BITS)
    elif faces.shape[0]:
        _fill_depth_keys(screen, faces, height, width, keys, pixels_per_chunk)
    face_ids = torch.bitwise_and(keys, _FACE_MASK).to(torch.int32).view(height, width)
    return Rasterization(face_ids, screen, clip_positions[:, 3].to(torch.float32), faces)


def uses_cpu_kernels(device: torch.device) -> bool:
    """Whether work on ``device`` runs the numba loops (the rasterizer's and the bake's): CPU tensors,
    unless ``USE_CPU_KERNELS`` is off."""
    return USE_CPU_KERNELS and device.type == "cpu"


def _padded_span(span: torch.Tensor) -> torch.Tensor:
    """Round spans up to a few size classes (exact up to 8, then steps of 1/8 to 1/4 of a power of two)."""
    exponent = torch.floor(torch.log2(span.clamp_min(1).to(torch.float32))).to(torch.int64)
    step = torch.pow(2, (exponent - 2).clamp_min(0))
    return torch.where(span <= 8, span, (span + step - 1) // step * step)


def _scanline_extent(corners: torch.Tensor, centre_y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x-extent (float64) of each triangle ``[S, 3, 3]`` on the line ``y = centre_y`` (clamped to it)."""
    corners = corners.to(torch.float64)
    y = centre_y.to(torch.float64).clamp(corners[:, :, 1].amin(dim=1), corners[:, :, 1].amax(dim=1))
    low = torch.full_like(y, float("inf"))
    high = torch.full_like(y, float("-inf"))
    for first, second in ((0, 1), (1, 2), (2, 0)):
        p, q = corners[:, first], corners[:, second]
        dy = q[:, 1] - p[:, 1]
        crosses = (torch.minimum(p[:, 1], q[:, 1]) <= y) & (y <= torch.maximum(p[:, 1], q[:, 1]))
        sloped = crosses & (dy != 0)
        x = p[:, 0] + (y - p[:, 1]) / torch.where(sloped, dy, torch.ones_like(dy)) * (q[:, 0] - p[:, 0])
        low = torch.where(sloped, torch.minimum(low, x), low)
        high = torch.where(sloped, torch.maximum(high, x), high)
        flat = crosses & (dy == 0)
        low = torch.where(flat, torch.minimum(low, torch.minimum(p[:, 0], q[:, 0])), low)
        high = torch.where(flat, torch.maximum(high, torch.maximum(p[:, 0], q[:, 0])), high)
    return low, high


def _fill_depth_keys(screen, faces, height, width, keys, pixels_per_chunk) -> None:
    """Scatter the depth key of every covered (face, pixel) pair into ``keys`` with ``amin``.

    Every triangle is cut into its pixel rows; each row is limited to the triangle's extent on the
    row's centre line (plus a one-pixel margin, the exact test decides) and rows of the same padded
    length are processed together as dense ``[rows, cols]`` blocks in which per-row constants
    broadcast instead of being gathered per pixel.
    """
    device = keys.device
    corners = screen[faces]  # [F, 3, 3]
    ax, ay = corners[:, 0, 0], corners[:, 0, 1]
    bx, by = corners[:, 1, 0], corners[:, 1, 1]
    cx, cy = corners[:, 2, 0], corners[:, 2, 1]
    area = _signed_area2(ax, ay, bx, by, cx, cy)
    x_min, x_max = corners[:, :, 0].amin(dim=1), corners[:, :, 0].amax(dim=1)
    y_min, y_max = corners[:, :, 1].amin(dim=1), corners[:, :, 1].amax(dim=1)
    # The reference loops px from int(x_min) (truncation) while px < x_max + 1, skipping px outside
    # the image; the first pixel not visited is ceil(x_max + 1) (the loop bound is a float compare).
    x_start = x_min.clamp(-1.0, float(width)).to(torch.int64).clamp_min(0)
    y_start = y_min.clamp(-1.0, float(height)).to(torch.int64).clamp_min(0)
    x_stop = torch.ceil((x_max + 1.0).clamp(0.0, float(width))).to(torch.int64)
    y_stop = torch.ceil((y_max + 1.0).clamp(0.0, float(height))).to(torch.int64)
    span_x = (x_stop - x_start).clamp_min(0)
    span_y = (y_stop - y_start).clamp_min(0)
    live = torch.nonzero((area != 0) & (span_x > 0) & (span_y > 0)).squeeze(1)
    if live.numel() == 0:
        return
    # One entry per (face, pixel row).
    rows_per_face = span_y[live]
    row_face = torch.repeat_interleave(live, rows_per_face)
    first_row = torch.cumsum(rows_per_face, 0) - rows_per_face
    row_y = y_start[row_face] + torch.arange(row_face.numel(), device=device) - torch.repeat_interleave(first_row, rows_per_face)
    row_x0, row_x1 = x_start[row_face], x_stop[row_face]
    wide = torch.nonzero(span_x[row_face] > NARROW_TRIANGLE_PIXELS).squeeze(1)
    if wide.numel():
        low, high = _scanline_extent(corners[row_face[wide]], row_y[wide].to(torch.float64) + 0.5)
        row_x0[wide] = torch.maximum(row_x0[wide], torch.floor(low - 0.5).to(torch.int64) - 1)
        row_x1[wide] = torch.minimum(row_x1[wide], torch.floor(high - 0.5).to(torch.int64) + 2)
    row_cols = row_x1 - row_x0
    kept = torch.nonzero(row_cols > 0).squeeze(1)
    padded = _padded_span(row_cols[kept]).clamp_max(width)
    order = kept[torch.argsort(padded, stable=True)]
    classes, class_counts = torch.unique_consecutive(padded.sort(stable=True).values, return_counts=True)
    # Per-row constants, gathered once in processing order; batches below are contiguous slices.
    face = row_face[order]
    per_face = torch.stack([ax, ay, cx - ax, cy - ay, bx - ax, by - ay, 1.0 / area, *corners[:, :, 2].unbind(1)], dim=1)
    gathered = per_face.index_select(0, face)
    constants, corner_depth = gathered[:, :7].t(), gathered[:, 7:]
    x0, y0, n_cols = row_x0[order], row_y[order], row_cols[order]
    offset = 0
    for cols, count in zip(classes.tolist(), class_counts.tolist()):
        per_batch = max(1, pixels_per_chunk // cols)
        for begin in range(offset, offset + count, per_batch):
            batch = slice(begin, min(offset + count, begin + per_batch))
            _scatter_rows(face[batch], x0[batch], y0[batch], n_cols[batch], cols, constants[:, batch], corner_depth[batch], width, keys)
        offset += count


def _scatter_rows(face, x0, y0, n_cols, cols, constants, corner_depth, width, keys) -> None:
    """Coverage test and z-buffer update for a batch of pixel rows padded to ``cols`` pixels.

    Padding pixels get NaN centres, which fail every coverage comparison.
    """
    device = keys.device
    ax, ay, cax, cay, bax, bay, inverse_area = (value.view(-1, 1) for value in constants)
    column = torch.arange(cols, device=device).view(1, cols)
    centre_x = (x0.view(-1, 1) + column).to(torch.float32) + 0.5  # [N, C]
    centre_x = centre_x.masked_fill(column >= n_cols.view(-1, 1), float("nan"))
    centre_y = y0.view(-1, 1).to(torch.float32) + 0.5  # [N, 1]
    dx = centre_x - ax
    dy = centre_y - ay
    beta = (cax * dy - dx * cay) * inverse_area
    gamma = (dx * bay - bax * dy) * inverse_area
    candidate = (torch.minimum(beta, gamma) >= 0) & (torch.maximum(beta, gamma) <= 1)
    index = torch.nonzero(candidate.view(-1)).squeeze(1)
    beta = beta.view(-1).index_select(0, index)
    gamma = gamma.view(-1).index_select(0, index)
    alpha = (1.0 - beta.to(torch.float64) - gamma.to(torch.float64)).to(torch.float32)
    row = index // cols
    depth = corner_depth.index_select(0, row)
    fragment_depth = alpha * depth[:, 0] + beta * depth[:, 1] + gamma * depth[:, 2]
    # alpha <= 1 follows from beta, gamma >= 0; only its sign needs testing.
    kept = torch.nonzero((alpha >= 0) & (fragment_depth >= 0)).squeeze(1)
    index, row = index.index_select(0, kept), row.index_select(0, kept)
    bucket = (fragment_depth.index_select(0, kept) * float(DEPTH_QUANTIZATION)).to(torch.int32).to(torch.int64)
    key = torch.bitwise_or(torch.bitwise_left_shift(bucket, KEY_FACE_BITS), face.index_select(0, row) + 1)
    pixel = y0.index_select(0, row) * width + x0.index_select(0, row) + (index - row * cols)
    keys.scatter_reduce_(0, pixel, key, reduce="amin")


def _covered_barycentrics(screen, w, faces, face_ids) -> tuple[torch.Tensor, torch.Tensor]:
    """(flat indices [P] of the covered pixels, their barycentrics [P, 3]), in row-major order.

    Elementwise per pixel, computed in chunks of ``PIXELS_PER_PASS`` pixels (same numbers, small
    temporaries)."""
    width = face_ids.shape[1]
    pixel = torch.nonzero(face_ids.view(-1) > 0).squeeze(1)
    result = torch.empty((pixel.numel(), 3), dtype=torch.float32, device=screen.device)
    if uses_cpu_kernels(screen.device):
        from hy3dpaint.render import cpu_kernels

        cpu_kernels.covered_barycentrics(screen.contiguous().numpy(), w.contiguous().numpy(), faces.contiguous().numpy(),
                                         face_ids.contiguous().numpy(), pixel.numpy(), result.numpy())
        return pixel, result
    for begin in range(0, pixel.numel(), PIXELS_PER_PASS):
        part = pixel[begin : begin + PIXELS_PER_PASS]
        face = face_ids.view(-1).index_select(0, part).to(torch.int64) - 1
        corner = faces.index_select(0, face)  # [p, 3]
        a, b, c = (screen.index_select(0, corner[:, k]) for k in range(3))
        centre_x = (part % width).to(torch.float32) + 0.5
        centre_y = (part // width).to(torch.float32) + 0.5
        area = _signed_area2(a[:, 0], a[:, 1], b[:, 0], b[:, 1], c[:, 0], c[:, 1])
        alpha, beta, gamma = _barycentrics(a[:, 0], a[:, 1], b[:, 0], b[:, 1], c[:, 0], c[:, 1], area, centre_x, centre_y)
        alpha = alpha / w.index_select(0, corner[:, 0])
        beta = beta / w.index_select(0, corner[:, 1])
        gamma = gamma / w.index_select(0, corner[:, 2])
        normaliser = 1.0 / ((alpha + beta) + gamma)
        torch.stack([alpha * normaliser, beta * normaliser, gamma * normaliser], dim=1, out=result[begin : begin + part.numel()])
    return pixel, result


def interpolate_covered(attributes: torch.Tensor, raster: Rasterization, faces: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`interpolate` at the covered pixels only: (flat pixel indices [P], values [P, C]).

    Same numbers as ``interpolate(...)`` at those pixels, without building full images (the UV
    texel table of a 4096^2 atlas has ~10^7 of them); evaluated ``PIXELS_PER_PASS`` pixels at a time.
    """
    faces = faces.to(device=attributes.device, dtype=torch.int64)
    pixel, weights = raster.covered_barycentrics()
    face_ids = raster.face_ids.reshape(-1)
    values = torch.empty((pixel.numel(), attributes.shape[1]), dtype=attributes.dtype, device=attributes.device)
    if uses_cpu_kernels(attributes.device) and attributes.dtype in (torch.float32, torch.float64):
        from hy3dpaint.render import cpu_kernels

        cpu_kernels.interpolate(attributes.contiguous().numpy(), faces.contiguous().numpy(),
                                raster.face_ids.contiguous().numpy(), pixel.numpy(), weights.numpy(), values.numpy())
        return pixel, values
    for begin in range(0, pixel.numel(), PIXELS_PER_PASS):
        part = pixel[begin : begin + PIXELS_PER_PASS]
        corner_values = attributes[faces[face_ids.index_select(0, part).to(torch.int64) - 1]]  # [p, 3, C]
        torch.sum(weights[begin : begin + part.numel()].unsqueeze(-1) * corner_values, dim=-2,
                  out=values[begin : begin + part.numel()])
    return pixel, values


def interpolate(attributes: torch.Tensor, raster: Rasterization, faces: torch.Tensor) -> torch.Tensor:
    """Interpolate per-vertex ``attributes [V, C]`` at every pixel: ``sum_i b_i * attr[v_i]``.

    Returns ``[H, W, C]`` (the attributes' dtype); background pixels get 0. ``faces [F, 3]`` indexes
    ``attributes`` (it may differ from the rasterized faces, e.g. UV indices, as long as face order
    matches). Only covered pixels are evaluated.
    """
    height, width = raster.face_ids.shape
    pixel, values = interpolate_covered(attributes, raster, faces)
    result = torch.zeros((height * width, attributes.shape[1]), dtype=attributes.dtype, device=attributes.device)
    result[pixel] = values
    return result.view(height, width, -1)
