"""Volume decoding: decoded latent tokens -> occupancy logit grid (FACTS §7).

``octree_resolution = R`` means ``R + 1`` samples per axis over ``[-box_v, box_v]`` (``numpy.linspace``
in float32), axes (x, y, z), flattened with z fastest. The query coordinates are cast to the geometry
decoder's dtype (float16 in production); logits are stored as float32.

Common to all decoders: the geometry decoder's latent keys and values are computed **once per
request** (``geo_decoder.latent_kv``), not once per chunk, and the chunk size follows the device
(``auto_num_chunks``: large on CUDA, bounded by a memory budget) unless ``num_chunks`` is given.

* ``VanillaVolumeDecoder`` (``"dense"``, the parity reference): every grid point. Chunk coordinates are
  computed from flat indices on the fly, so besides the output grid (``4 (R + 1)^3`` bytes per item)
  memory is bounded by one chunk.
* ``HierarchicalVolumeDecoder`` (``"hierarchical"``): upstream's coarse-to-fine scheme. The grid is first
  decoded at ``R / 2^k`` (the coarsest level at least ``min_resolution``), then at each finer level only
  the points near the surface of the previous level (a sign change, or ``|logit - level| < band``) are
  decoded; every other point inherits the value of its nearest coarser sample. No NaNs are left.
* ``FlashVDMVolumeDecoder`` (``"flashvdm"``, the serving default): the same coarse-to-fine scheme with a
  scale-free refinement test (see ``RefinementSettings``), adaptive key/value selection per spatial
  block of queries (``KVSelection``), and NaN at the finest level where nothing was decoded (the
  surface extractor fills those cells by the sign of their decoded neighbours).

Every decoder reports progress as ``callback("shape:decode", done, total)``: once per chunk (dense) or
once per level (coarse to fine), the last call with ``done == total``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

#: Upstream's number of query points per geometry-decoder call (the benchmark's baseline).
DEFAULT_NUM_CHUNKS = 8000
#: Smallest and largest accepted ``octree_resolution``.
MIN_OCTREE_RESOLUTION = 8
MAX_OCTREE_RESOLUTION = 1024
#: Coarsest level of the coarse-to-fine decoders (upstream: 63).
MIN_HIERARCHICAL_RESOLUTION = 63
#: Hierarchical decoder: points whose logit is within this distance of the iso level are refined.
NEAR_SURFACE_LOGIT_BAND = 0.95
#: Memory one decoder call may use for its activations when ``num_chunks`` is not given (bytes).
CUDA_DECODE_MEMORY_BUDGET_BYTES = 4 * 2**30
CPU_DECODE_MEMORY_BUDGET_BYTES = 256 * 2**20
#: On CUDA the budget is also capped at this share of the free device memory.
CUDA_FREE_MEMORY_SHARE = 0.25
#: Bounds of the automatic chunk size (query points per decoder call).
MIN_AUTO_NUM_CHUNKS = 4096
MAX_AUTO_NUM_CHUNKS_CPU = 65536
MAX_AUTO_NUM_CHUNKS_CUDA = 1 << 20
#: Phase name of the progress callback.
DECODE_PHASE = "shape:decode"

#: ``callback(phase, done, total)``; may raise to cancel (the exception propagates).
ProgressCallback = Callable[[str, int, int], None]


class GeometryDecoderFn(Protocol):
    def __call__(self, queries: torch.Tensor, latents: torch.Tensor) -> torch.Tensor: ...


# ---------------------------------------------------------------------------------------- arguments


def _check_arguments(bounds: float, octree_resolution: int | None, num_chunks: int | None) -> int:
    if octree_resolution is None:
        raise ValueError("octree_resolution is required (R + 1 samples per axis)")
    if isinstance(octree_resolution, bool) or not isinstance(octree_resolution, (int, np.integer)):
        raise ValueError(f"octree_resolution must be an integer, got {octree_resolution!r}")
    if not MIN_OCTREE_RESOLUTION <= octree_resolution <= MAX_OCTREE_RESOLUTION:
        raise ValueError(
            f"octree_resolution must be in [{MIN_OCTREE_RESOLUTION}, {MAX_OCTREE_RESOLUTION}], got {octree_resolution}"
        )
    if isinstance(bounds, bool) or not isinstance(bounds, (int, float)) or not bounds > 0:
        raise ValueError(f"bounds (box_v) must be a positive number (half side of the cube), got {bounds!r}")
    if num_chunks is not None and (
        isinstance(num_chunks, bool) or not isinstance(num_chunks, (int, np.integer)) or num_chunks < 1
    ):
        raise ValueError(
            f"num_chunks (query points per decoder call) must be a positive integer or None (automatic), "
            f"got {num_chunks!r}"
        )
    return int(octree_resolution)


def grid_axis(bounds: float, octree_resolution: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The ``R + 1`` sample coordinates of one axis: ``numpy.linspace(-b, b, R + 1)`` as float32."""
    values = np.linspace(-bounds, bounds, octree_resolution + 1, dtype=np.float32)
    return torch.from_numpy(values).to(device)


def grid_points(axis: torch.Tensor, flat_indices: torch.Tensor) -> torch.Tensor:
    """Coordinates ``[K, 3]`` of the grid points with the given C-order flat indices (z fastest)."""
    n = axis.shape[0]
    x, remainder = flat_indices.div(n * n, rounding_mode="floor"), flat_indices.remainder(n * n)
    y, z = remainder.div(n, rounding_mode="floor"), remainder.remainder(n)
    return torch.stack([axis[x], axis[y], axis[z]], dim=-1)


def _decoder_dtype(geo_decoder: GeometryDecoderFn, latents: torch.Tensor) -> torch.dtype:
    weight = getattr(getattr(geo_decoder, "query_proj", None), "weight", None)
    return weight.dtype if weight is not None else latents.dtype


# ---------------------------------------------------------------------------------------- chunk size


def bytes_per_query(latents: torch.Tensor, dtype: torch.dtype, heads: int | None = None,
                    mlp_ratio: int = 4, scores_materialised: bool = True) -> int:
    """Estimated activation bytes of one query point in one geometry-decoder call.

    Counts the live per-point activations (about ``6 + 2 * mlp_ratio`` vectors of the width) for every
    batch item, plus the attention scores (``heads x tokens``) where the attention kernel materialises them.
    """
    batch, tokens, width = latents.shape
    element = torch.finfo(dtype).bits // 8 if dtype.is_floating_point else 4
    heads = heads or 1
    per_item = (6 + 2 * mlp_ratio) * width + (heads * tokens if scores_materialised else 0)
    return batch * (per_item * element + 4) + 12


def auto_num_chunks(latents: torch.Tensor, dtype: torch.dtype, heads: int | None = None) -> int:
    """Query points per decoder call for this device: the memory budget divided by ``bytes_per_query``.

    CUDA: ``CUDA_DECODE_MEMORY_BUDGET_BYTES`` (at most ``CUDA_FREE_MEMORY_SHARE`` of the free memory),
    clamped to ``[MIN_AUTO_NUM_CHUNKS, MAX_AUTO_NUM_CHUNKS_CUDA]``; elsewhere
    ``CPU_DECODE_MEMORY_BUDGET_BYTES`` clamped to ``[MIN_AUTO_NUM_CHUNKS, MAX_AUTO_NUM_CHUNKS_CPU]``
    (larger chunks stop paying off on a CPU once the per-call overhead is amortised).
    """
    device = latents.device
    if device.type == "cuda":
        budget = CUDA_DECODE_MEMORY_BUDGET_BYTES
        try:
            free, _total = torch.cuda.mem_get_info(device)
            budget = min(budget, int(free * CUDA_FREE_MEMORY_SHARE))
        except RuntimeError:  # pragma: no cover - depends on the driver
            logger.debug("torch.cuda.mem_get_info unavailable; using the fixed decode budget")
        per_point = bytes_per_query(latents, dtype, heads, scores_materialised=False)
        high = MAX_AUTO_NUM_CHUNKS_CUDA
    else:
        budget = CPU_DECODE_MEMORY_BUDGET_BYTES
        per_point = bytes_per_query(latents, dtype, heads, scores_materialised=True)
        high = MAX_AUTO_NUM_CHUNKS_CPU
    return int(min(high, max(MIN_AUTO_NUM_CHUNKS, budget // per_point)))


# ---------------------------------------------------------------------------------------- decoding


class PointDecoder:
    """Decodes logits at grid points for one request: keys/values computed once, chunked calls.

    ``geo_decoder`` is the VAE's ``GeometryDecoder`` (``latent_kv``/``decode_kv`` are used) or any callable
    ``geo_decoder(queries=, latents=)`` (then the keys/values are its business).
    """

    def __init__(self, latents: torch.Tensor, geo_decoder: GeometryDecoderFn, num_chunks: int | None):
        self.latents = latents
        self.geo_decoder = geo_decoder
        self.dtype = _decoder_dtype(geo_decoder, latents)
        self.heads = _heads(geo_decoder)
        self.kv = geo_decoder.latent_kv(latents) if hasattr(geo_decoder, "latent_kv") else None
        self.num_chunks = int(num_chunks) if num_chunks is not None else auto_num_chunks(latents, self.dtype,
                                                                                          self.heads)

    def __call__(self, points: torch.Tensor, attention: Callable | None = None) -> torch.Tensor:
        """Logits ``[B, K]`` (float32) at ``points`` ``[K, 3]``, one decoder call (no chunking)."""
        queries = points.to(self.dtype)[None].expand(self.latents.shape[0], -1, -1)
        if self.kv is not None:
            return self.geo_decoder.decode_kv(queries, self.kv, attention)[..., 0].float()
        return self.geo_decoder(queries=queries, latents=self.latents)[..., 0].float()


def _heads(geo_decoder: Any) -> int | None:
    block = getattr(geo_decoder, "cross_attn_decoder", None)
    return getattr(getattr(block, "attn", None), "heads", None)


def _decode_points(
    decoder: PointDecoder,
    axis: torch.Tensor,
    flat_indices: torch.Tensor | None,
    on_chunk: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Logits ``[B, K]`` (float32) at the grid points ``flat_indices`` (``None``: every point, with the
    indices generated chunk by chunk), ``decoder.num_chunks`` points per call."""
    batch, device = decoder.latents.shape[0], decoder.latents.device
    total = axis.shape[0] ** 3 if flat_indices is None else flat_indices.numel()
    logits = torch.empty(batch, total, dtype=torch.float32, device=device)
    chunks = max(1, math.ceil(total / decoder.num_chunks))
    for index, start in enumerate(range(0, total, decoder.num_chunks)):
        stop = min(start + decoder.num_chunks, total)
        chunk = torch.arange(start, stop, device=device) if flat_indices is None else flat_indices[start:stop]
        logits[:, start:stop] = decoder(grid_points(axis, chunk))
        if on_chunk is not None:
            on_chunk(index + 1, chunks)
    return logits


class VanillaVolumeDecoder:
    """Dense grid decoding; ``decoder(latents, geo_decoder, bounds=, num_chunks=, octree_resolution=)``."""

    def __call__(
        self,
        latents: torch.Tensor,
        geo_decoder: GeometryDecoderFn,
        bounds: float = 1.01,
        num_chunks: int | None = None,
        octree_resolution: int | None = None,
        mc_level: float = 0.0,
        callback: ProgressCallback | None = None,
        **_: object,
    ) -> torch.Tensor:
        """Decoded tokens ``[B, N, width]`` -> logits ``[B, R + 1, R + 1, R + 1]`` float32 (axes x, y, z).

        ``num_chunks``: query points per decoder call (``None``: ``auto_num_chunks``). ``callback`` gets
        ``("shape:decode", chunk, chunks)`` after every chunk. Raises ``ValueError`` for an out-of-range
        ``octree_resolution``, ``bounds`` or ``num_chunks``.
        """
        resolution = _check_arguments(bounds, octree_resolution, num_chunks)
        n = resolution + 1
        decoder = PointDecoder(latents, geo_decoder, num_chunks)
        on_chunk = None if callback is None else (lambda done, total: callback(DECODE_PHASE, done, total))
        logits = _decode_points(decoder, grid_axis(bounds, resolution, latents.device), None, on_chunk)
        return logits.view(latents.shape[0], n, n, n)


# ---------------------------------------------------------------------------------------- coarse to fine


def _dilate(mask: torch.Tensor, cells: int = 1) -> torch.Tensor:
    """Boolean dilation with a ``(2 cells + 1)^3`` box over the last three axes (separable, 1 byte per voxel)."""
    for _ in range(cells):
        for axis in (-3, -2, -1):
            grown = mask.clone()
            length = mask.shape[axis]
            grown.narrow(axis, 0, length - 1).logical_or_(mask.narrow(axis, 1, length - 1))
            grown.narrow(axis, 1, length - 1).logical_or_(mask.narrow(axis, 0, length - 1))
            mask = grown
    return mask


def near_surface(grid: torch.Tensor, mc_level: float, band: float) -> torch.Tensor:
    """Points whose sign (relative to ``mc_level``) differs from a 6-neighbour, or within ``band`` of it."""
    inside = grid > mc_level
    marked = (grid - mc_level).abs() < band
    for axis in (-3, -2, -1):
        length = grid.shape[axis]
        change = inside.narrow(axis, 1, length - 1) != inside.narrow(axis, 0, length - 1)
        marked.narrow(axis, 1, length - 1).logical_or_(change)
        marked.narrow(axis, 0, length - 1).logical_or_(change)
    return marked


def local_variation(grid: torch.Tensor) -> torch.Tensor:
    """Largest absolute difference of every point to one of its 6 neighbours (logit change per cell)."""
    variation = torch.zeros_like(grid)
    for axis in (-3, -2, -1):
        length = grid.shape[axis]
        step = (grid.narrow(axis, 1, length - 1) - grid.narrow(axis, 0, length - 1)).abs()
        variation.narrow(axis, 1, length - 1).copy_(torch.maximum(variation.narrow(axis, 1, length - 1), step))
        variation.narrow(axis, 0, length - 1).copy_(torch.maximum(variation.narrow(axis, 0, length - 1), step))
    return variation


def coarse_to_fine_levels(octree_resolution: int, min_resolution: int) -> list[int]:
    """Resolutions decoded, coarsest first: ``R`` halved while even and the half is >= ``min_resolution``.

    Halving keeps every coarse sample on a fine one (fine index ``2 i`` is coarse index ``i``), so the
    finest level is exactly ``R`` and the grid has the dense decoder's shape and coordinates.
    """
    levels = [int(octree_resolution)]
    while levels[0] % 2 == 0 and levels[0] // 2 >= min_resolution:
        levels.insert(0, levels[0] // 2)
    return levels


def _upsample_nearest(grid: torch.Tensor, n: int) -> torch.Tensor:
    """Grid ``[B, m, m, m]`` -> ``[B, n, n, n]`` taking the nearest coarser sample (index ``i // 2``)."""
    nearest = torch.arange(n, device=grid.device) // 2
    return grid[:, nearest][:, :, nearest][:, :, :, nearest].contiguous()


def _refine_indices(coarse_marked: torch.Tensor, n: int, dilation: int, coarse_dilation: int | None = None
                    ) -> torch.Tensor:
    """Flat indices at the finer level ``n`` of the cells around the marked coarse points: dilated by
    ``coarse_dilation`` (default ``dilation``) coarse cells, mapped, dilated by ``dilation`` fine cells.

    One fine cell of dilation already covers every fine point of each coarse cube with a marked corner.
    """
    marked = torch.zeros((n, n, n), dtype=torch.bool, device=coarse_marked.device)
    marked[::2, ::2, ::2] = _dilate(coarse_marked, dilation if coarse_dilation is None else coarse_dilation)
    return _dilate(marked, dilation).flatten().nonzero().squeeze(1)


class HierarchicalVolumeDecoder:
    """Upstream's coarse-to-fine decoding (see the module docstring); an approximation of the dense grid
    that gives the same mesh when the surface is resolved at the coarsest level."""

    def __init__(self, min_resolution: int = MIN_HIERARCHICAL_RESOLUTION, band: float = NEAR_SURFACE_LOGIT_BAND):
        if min_resolution < MIN_OCTREE_RESOLUTION:
            raise ValueError(f"min_resolution must be at least {MIN_OCTREE_RESOLUTION}, got {min_resolution}")
        if not band > 0:
            raise ValueError(f"band must be positive, got {band}")
        self.min_resolution = int(min_resolution)
        self.band = float(band)
        #: Query points decoded by the last call (all levels).
        self.last_decoded_points = 0

    def levels(self, octree_resolution: int) -> list[int]:
        """Resolutions decoded, coarsest first (``coarse_to_fine_levels``)."""
        return coarse_to_fine_levels(octree_resolution, self.min_resolution)

    def __call__(
        self,
        latents: torch.Tensor,
        geo_decoder: GeometryDecoderFn,
        bounds: float = 1.01,
        num_chunks: int | None = None,
        octree_resolution: int | None = None,
        mc_level: float = 0.0,
        callback: ProgressCallback | None = None,
        **_: object,
    ) -> torch.Tensor:
        """Same contract as ``VanillaVolumeDecoder.__call__``; ``mc_level`` locates the surface;
        ``callback`` gets ``("shape:decode", level, levels)`` after every level."""
        resolution = _check_arguments(bounds, octree_resolution, num_chunks)
        levels = self.levels(resolution)
        decoder = PointDecoder(latents, geo_decoder, num_chunks)
        n = levels[0] + 1
        grid = _decode_points(decoder, grid_axis(bounds, levels[0], latents.device), None).view(-1, n, n, n)
        self.last_decoded_points = n**3
        if callback is not None:
            callback(DECODE_PHASE, 1, len(levels))
        for index, level in enumerate(levels[1:], start=2):
            n = level + 1
            coarse_marked = near_surface(grid, mc_level, self.band).any(dim=0)
            flat = _refine_indices(coarse_marked, n, dilation=1)
            fine = _upsample_nearest(grid, n)
            fine.view(fine.shape[0], -1)[:, flat] = _decode_points(decoder, grid_axis(bounds, level, latents.device),
                                                                   flat)
            self.last_decoded_points += flat.numel()
            logger.debug("hierarchical decoding: level %d, %d of %d points decoded", level, flat.numel(), n**3)
            grid = fine
            if callback is not None:
                callback(DECODE_PHASE, index, len(levels))
        return grid


# ---------------------------------------------------------------------------------------- FlashVDM

#: Share of the latent tokens each query block keeps (upstream: ``tokens // 3``).
KV_FRACTION = 1 / 3
#: Upstream's special cases of the kept token count.
KV_SPECIAL_COUNTS = {3072: 1024, 512: 256}
#: Selected tokens must carry at least this share of the block's attention (else more are kept).
MIN_KV_ATTENTION_MASS = 0.99
#: A block that would need more than this share of the tokens attends to all of them.
MAX_KV_SELECTED_SHARE = 0.75
#: Queries of a block whose full attention is computed to check the selection.
KV_PROBE_QUERIES = 32
#: Side (grid cells) of the cubic blocks of queries that share one key/value selection.
KV_BLOCK_CELLS = 16
#: After this many blocks of a request, if at least ``KV_GIVE_UP_SHARE`` of them needed (nearly) all the
#: tokens, the attention is flat for this model and the rest of the request attends densely (no probing).
KV_GIVE_UP_AFTER_BLOCKS = 64
KV_GIVE_UP_SHARE = 0.9
TOPK_MODES = ("mean", "merge")


def selected_token_count(tokens: int, fraction: float = KV_FRACTION) -> int:
    """Tokens each query block keeps: upstream's ``tokens // 3`` (1024 of 3072, 256 of 512)."""
    if fraction == KV_FRACTION and tokens in KV_SPECIAL_COUNTS:
        return KV_SPECIAL_COUNTS[tokens]
    return max(1, int(tokens * fraction))


@dataclass
class KVSelection:
    """Adaptive key/value selection (FlashVDM): each spatial block of queries attends to a subset of tokens.

    * ``topk_mode="mean"`` (upstream): tokens ranked, per head, by the attention of the block's mean query;
      ``"merge"``: by the mean attention of ``probe_queries`` queries of the block.
    * The ``count`` best tokens are kept (``selected_token_count``). Then ``probe_queries`` queries of the
      block are attended exactly: if the kept tokens carry less than ``min_attention_mass`` of their
      attention (flat attention, e.g. random weights), tokens are added by the probes' ranking until
      they do; a block needing more than ``max_selected_share`` of the tokens attends to all of them.
      Peaked (trained) attention keeps a third; flat attention degrades to the exact dense attention,
      and once ``give_up_share`` of the first ``give_up_after_blocks`` blocks of a request needed all
      tokens, the rest of the request skips the probing and attends densely (``reset()`` per request).
    """

    fraction: float = KV_FRACTION
    topk_mode: str = "mean"
    min_attention_mass: float = MIN_KV_ATTENTION_MASS
    max_selected_share: float = MAX_KV_SELECTED_SHARE
    probe_queries: int = KV_PROBE_QUERIES
    give_up_after_blocks: int = KV_GIVE_UP_AFTER_BLOCKS
    give_up_share: float = KV_GIVE_UP_SHARE
    stats: dict[str, int] = field(default_factory=lambda: {"blocks": 0, "dense_blocks": 0, "grown_blocks": 0})

    def reset(self) -> None:
        """Start a new request: clear the statistics (and the flat-attention decision)."""
        self.stats = {"blocks": 0, "dense_blocks": 0, "grown_blocks": 0}

    @property
    def gave_up(self) -> bool:
        """Whether this request's attention proved flat, so that every further block attends densely."""
        blocks = self.stats["blocks"]
        return blocks >= self.give_up_after_blocks and self.stats["dense_blocks"] >= self.give_up_share * blocks

    def __post_init__(self):
        if self.topk_mode not in TOPK_MODES:
            raise ValueError(f"topk_mode must be one of {list(TOPK_MODES)}, got {self.topk_mode!r}")
        if not 0 < self.fraction <= 1:
            raise ValueError(f"KV fraction must be in (0, 1], got {self.fraction}")
        if not 0 < self.min_attention_mass <= 1:
            raise ValueError(f"min_attention_mass must be in (0, 1], got {self.min_attention_mass}")
        if self.probe_queries < 1:
            raise ValueError(f"probe_queries must be positive, got {self.probe_queries}")

    def attend_block(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """Attention of one block of queries ``[B, H, P, d]`` to a selection of the tokens ``[B, H, M, d]``."""
        tokens = key.shape[2]
        count = selected_token_count(tokens, self.fraction)
        self.stats["blocks"] += 1
        if count >= tokens * self.max_selected_share:
            self.stats["dense_blocks"] += 1
            return F.scaled_dot_product_attention(query, key, value)
        scale = query.shape[-1] ** -0.5
        stride = max(1, query.shape[2] // self.probe_queries)
        probes = query[:, :, ::stride][:, :, : self.probe_queries]
        probe_attention = (probes @ key.transpose(-1, -2) * scale).float().softmax(dim=-1)  # [B, H, p, M]
        if self.topk_mode == "mean":
            ranking = (query.mean(dim=2, keepdim=True) @ key.transpose(-1, -2)).squeeze(2)  # [B, H, M]
        else:
            ranking = probe_attention.mean(dim=2)
        order = ranking.argsort(dim=-1, descending=True)
        covered = probe_attention.gather(-1, order[:, :, None].expand_as(probe_attention)[..., :count]).sum(-1)
        if covered.mean(dim=-1).min() < self.min_attention_mass:
            # Not enough attention in the kept tokens: rank by the probes and keep as many as needed.
            mean_attention = probe_attention.mean(dim=2)
            sorted_mass, order = mean_attention.sort(dim=-1, descending=True)
            needed = int((sorted_mass.cumsum(-1) < self.min_attention_mass).sum(-1).max()) + 1
            if needed > tokens * self.max_selected_share:
                self.stats["dense_blocks"] += 1
                return F.scaled_dot_product_attention(query, key, value)
            self.stats["grown_blocks"] += 1
            count = max(count, needed)
        chosen = order[..., :count, None].expand(-1, -1, -1, key.shape[-1])
        return F.scaled_dot_product_attention(query, key.gather(2, chosen), value.gather(2, chosen))

    def for_blocks(self, block_sizes: list[int]) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
        """An ``attention(q, k, v)`` for one decoder call whose queries are consecutive blocks of these sizes."""

        def attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
            if self.gave_up:
                self.stats["blocks"] += len(block_sizes)
                self.stats["dense_blocks"] += len(block_sizes)
                return F.scaled_dot_product_attention(query, key, value)
            parts = [self.attend_block(block, key, value) for block in query.split(block_sizes, dim=2)]
            return torch.cat(parts, dim=2)

        return attention


@dataclass(frozen=True)
class RefinementSettings:
    """Which cells of a coarse level are decoded again at the next level (the thin-part settings).

    A coarse point is refined when its sign differs from a 6-neighbour, or when it lies within
    ``relative_band`` cells of the level by a first-order estimate (``|logit - level| < relative_band *
    largest logit change to a neighbour``: scale-free, so it behaves the same on sharp trained fields and
    on flat random ones; this keeps thin parts whose surface bends between two coarse samples), or within
    ``logit_band`` of the level (upstream's absolute band, 0.95, kept for trained checkpoints whose
    logits are sharp) as long as that band covers at most ``max_band_share`` of the evaluated points
    (on a flat field the band is narrowed to that share). The marked points are dilated by
    ``coarse_dilation`` cells at the coarse level (upstream: 1; 0 here, the relative band already widens
    the marks where the surface may be), mapped to the fine level and dilated by ``dilation`` fine cells,
    which covers every fine point of each coarse cube with a marked corner. ``min_resolution`` is the
    coarsest level: a thin part must be visible there to be kept.
    """

    min_resolution: int = MIN_HIERARCHICAL_RESOLUTION
    relative_band: float = 1.5
    logit_band: float = NEAR_SURFACE_LOGIT_BAND
    max_band_share: float = 0.05
    dilation: int = 1
    coarse_dilation: int = 0

    def __post_init__(self):
        if self.min_resolution < MIN_OCTREE_RESOLUTION:
            raise ValueError(f"min_resolution must be at least {MIN_OCTREE_RESOLUTION}, got {self.min_resolution}")
        if self.relative_band < 0 or self.logit_band < 0 or not 0 <= self.max_band_share <= 1:
            raise ValueError("relative_band and logit_band must be >= 0 and max_band_share in [0, 1]")
        if self.dilation < 1 or self.coarse_dilation < 0:
            raise ValueError(f"dilation must be at least 1 cell and coarse_dilation at least 0, got "
                             f"{self.dilation} and {self.coarse_dilation}")

    def marked(self, grid: torch.Tensor, evaluated: torch.Tensor, mc_level: float) -> torch.Tensor:
        """Boolean ``[n, n, n]``: points of ``grid`` ``[B, n, n, n]`` (decoded where ``evaluated``) to refine."""
        distance = (grid - mc_level).abs()
        marked = near_surface(grid, mc_level, 0.0)
        if self.relative_band > 0:
            marked |= distance < self.relative_band * local_variation(grid)
        if self.logit_band > 0 and self.max_band_share > 0:
            values = distance[:, evaluated]
            band = torch.tensor(self.logit_band, device=grid.device)
            if values.numel() and (values < band).float().mean() > self.max_band_share:
                band = torch.quantile(values.flatten()[:: max(1, values.numel() // 1_000_000)].float(),
                                      self.max_band_share)
            marked |= distance < band
        return marked.any(dim=0) & evaluated


class FlashVDMVolumeDecoder:
    """FlashVDM volume decoding (arXiv 2503.16302): coarse to fine near the surface, adaptive KV selection.

    ``adaptive_kv_selection`` turns ``KVSelection`` on (``topk_mode`` as upstream); ``refinement`` holds the
    thin-part settings. The finest level is ``R`` (halving, so coarse samples lie on fine ones); points
    never decoded at the finest level are NaN (``fill_nan=False``) or take the value of their nearest
    decoded coarser sample (``fill_nan=True``).
    """

    def __init__(
        self,
        adaptive_kv_selection: bool = True,
        topk_mode: str = "mean",
        refinement: RefinementSettings | None = None,
        kv_block_cells: int = KV_BLOCK_CELLS,
        fill_nan: bool = False,
        **kv_settings: Any,
    ):
        if kv_block_cells < 1:
            raise ValueError(f"kv_block_cells must be positive, got {kv_block_cells}")
        self.refinement = refinement or RefinementSettings()
        self.kv_selection = KVSelection(topk_mode=topk_mode, **kv_settings) if adaptive_kv_selection else None
        self.kv_block_cells = int(kv_block_cells)
        self.fill_nan = bool(fill_nan)
        #: Query points decoded by the last call (all levels).
        self.last_decoded_points = 0

    def levels(self, octree_resolution: int) -> list[int]:
        """Resolutions decoded, coarsest first (``coarse_to_fine_levels``)."""
        return coarse_to_fine_levels(octree_resolution, self.refinement.min_resolution)

    def _decode(self, decoder: PointDecoder, bounds: float, level: int, flat: torch.Tensor | None) -> torch.Tensor:
        """Logits ``[B, K]`` at the level's points ``flat`` (``None``: all), decoded block by block."""
        device = decoder.latents.device
        n = level + 1
        if flat is None:
            flat = torch.arange(n**3, device=device)
        self.last_decoded_points += flat.numel()
        axis = grid_axis(bounds, level, device)
        if self.kv_selection is None or decoder.kv is None:
            return _decode_points(decoder, axis, flat)
        cells = self.kv_block_cells
        blocks_per_axis = -(-n // cells)
        x, rest = flat.div(n * n, rounding_mode="floor"), flat.remainder(n * n)
        y, z = rest.div(n, rounding_mode="floor"), rest.remainder(n)
        block = ((x // cells) * blocks_per_axis + y // cells) * blocks_per_axis + z // cells
        block, order = block.sort(stable=True)
        flat = flat[order]
        logits = torch.empty(decoder.latents.shape[0], flat.numel(), dtype=torch.float32, device=device)
        for start in range(0, flat.numel(), decoder.num_chunks):
            stop = min(start + decoder.num_chunks, flat.numel())
            sizes = torch.unique_consecutive(block[start:stop], return_counts=True)[1].tolist()
            points = grid_points(axis, flat[start:stop])
            logits[:, start:stop] = decoder(points, self.kv_selection.for_blocks(sizes))
        result = torch.empty_like(logits)
        result[:, order] = logits
        return result

    def __call__(
        self,
        latents: torch.Tensor,
        geo_decoder: GeometryDecoderFn,
        bounds: float = 1.01,
        num_chunks: int | None = None,
        octree_resolution: int | None = None,
        mc_level: float = 0.0,
        callback: ProgressCallback | None = None,
        **_: object,
    ) -> torch.Tensor:
        """Same contract as ``VanillaVolumeDecoder.__call__``, except that the grid may hold NaN where
        nothing was decoded (far from the surface); ``callback`` gets ``("shape:decode", level, levels)``."""
        resolution = _check_arguments(bounds, octree_resolution, num_chunks)
        levels = self.levels(resolution)
        decoder = PointDecoder(latents, geo_decoder, num_chunks)
        self.last_decoded_points = 0
        if self.kv_selection is not None:
            self.kv_selection.reset()
        n = levels[0] + 1
        grid = self._decode(decoder, bounds, levels[0], None).view(-1, n, n, n)
        evaluated = torch.ones((n, n, n), dtype=torch.bool, device=latents.device)
        if callback is not None:
            callback(DECODE_PHASE, 1, len(levels))
        for index, level in enumerate(levels[1:], start=2):
            n = level + 1
            coarse_marked = self.refinement.marked(grid, evaluated, mc_level)
            flat = _refine_indices(coarse_marked, n, self.refinement.dilation, self.refinement.coarse_dilation)
            last = index == len(levels)
            if last and not self.fill_nan:
                fine = torch.full((grid.shape[0], n, n, n), float("nan"), dtype=torch.float32, device=grid.device)
            else:
                fine = _upsample_nearest(grid, n)
            fine.view(fine.shape[0], -1)[:, flat] = self._decode(decoder, bounds, level, flat)
            evaluated = torch.zeros((n, n, n), dtype=torch.bool, device=grid.device)
            evaluated.view(-1)[flat] = True
            logger.debug("flashvdm decoding: level %d, %d of %d points decoded", level, flat.numel(), n**3)
            grid = fine
            if callback is not None:
                callback(DECODE_PHASE, index, len(levels))
        return grid


#: Volume decoders selectable by name (``pipe.set_volume_decoder(name)``, ``HY3D_VOLUME_DECODER``).
VOLUME_DECODERS: dict[str, Callable[[], Any]] = {
    "dense": VanillaVolumeDecoder,
    "hierarchical": HierarchicalVolumeDecoder,
    "flashvdm": FlashVDMVolumeDecoder,
}
