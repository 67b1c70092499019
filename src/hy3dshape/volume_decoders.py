"""Volume decoding: decoded latent tokens -> occupancy logit grid (FACTS §7).

``octree_resolution = R`` means ``R + 1`` samples per axis over ``[-box_v, box_v]`` (``numpy.linspace``
in float32), axes (x, y, z), flattened with z fastest. The query coordinates are cast to the geometry
decoder's dtype (float16 in production); logits are stored as float32.

* ``VanillaVolumeDecoder`` (default, as upstream): every grid point, in chunks of ``num_chunks`` points.
  Chunk coordinates are computed from flat indices on the fly, so besides the output grid
  (``4 (R + 1)^3`` bytes per item) memory is bounded by one chunk.
* ``HierarchicalVolumeDecoder`` (opt-in speed mode): coarse to fine. The grid is first decoded at
  ``R / 2^k`` (the coarsest level at least ``min_resolution``), then at each finer level only the points
  near the surface of the previous level are decoded; every other point inherits the value of its
  nearest coarser sample, which lies far from the surface and has the right sign. No NaNs are left,
  so any surface extractor works on the result.
"""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np
import torch

logger = logging.getLogger(__name__)

#: Default number of query points per geometry-decoder call (upstream default).
DEFAULT_NUM_CHUNKS = 8000
#: Smallest and largest accepted ``octree_resolution``.
MIN_OCTREE_RESOLUTION = 8
MAX_OCTREE_RESOLUTION = 1024
#: Coarsest level of the hierarchical decoder (upstream: 63).
MIN_HIERARCHICAL_RESOLUTION = 63
#: Hierarchical decoder: points whose logit is within this distance of the iso level are refined.
NEAR_SURFACE_LOGIT_BAND = 0.95


class GeometryDecoderFn(Protocol):
    def __call__(self, queries: torch.Tensor, latents: torch.Tensor) -> torch.Tensor: ...


def _check_arguments(bounds: float, octree_resolution: int | None, num_chunks: int) -> int:
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
    if isinstance(num_chunks, bool) or not isinstance(num_chunks, (int, np.integer)) or num_chunks < 1:
        raise ValueError(f"num_chunks (query points per decoder call) must be a positive integer, got {num_chunks!r}")
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


def _decode_points(
    latents: torch.Tensor,
    geo_decoder: GeometryDecoderFn,
    axis: torch.Tensor,
    flat_indices: torch.Tensor | None,
    num_chunks: int,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Logits ``[B, K]`` (float32) at the grid points ``flat_indices`` (``None``: every point, with the
    indices generated chunk by chunk), ``num_chunks`` points per decoder call."""
    batch, device = latents.shape[0], latents.device
    total = axis.shape[0] ** 3 if flat_indices is None else flat_indices.numel()
    logits = torch.empty(batch, total, dtype=torch.float32, device=device)
    for start in range(0, total, num_chunks):
        stop = min(start + num_chunks, total)
        chunk = torch.arange(start, stop, device=device) if flat_indices is None else flat_indices[start:stop]
        queries = grid_points(axis, chunk).to(dtype)[None].expand(batch, -1, -1)
        logits[:, start:stop] = geo_decoder(queries=queries, latents=latents)[..., 0].float()
    return logits


def _decoder_dtype(geo_decoder: GeometryDecoderFn, latents: torch.Tensor) -> torch.dtype:
    weight = getattr(getattr(geo_decoder, "query_proj", None), "weight", None)
    return weight.dtype if weight is not None else latents.dtype


class VanillaVolumeDecoder:
    """Dense grid decoding; ``decoder(latents, geo_decoder, bounds=, num_chunks=, octree_resolution=)``."""

    def __call__(
        self,
        latents: torch.Tensor,
        geo_decoder: GeometryDecoderFn,
        bounds: float = 1.01,
        num_chunks: int = DEFAULT_NUM_CHUNKS,
        octree_resolution: int | None = None,
        mc_level: float = 0.0,
        **_: object,
    ) -> torch.Tensor:
        """Decoded tokens ``[B, N, width]`` -> logits ``[B, R + 1, R + 1, R + 1]`` float32 (axes x, y, z).

        Raises ``ValueError`` for an out-of-range ``octree_resolution``, ``bounds`` or ``num_chunks``.
        """
        resolution = _check_arguments(bounds, octree_resolution, num_chunks)
        n = resolution + 1
        axis = grid_axis(bounds, resolution, latents.device)
        logits = _decode_points(latents, geo_decoder, axis, None, num_chunks, _decoder_dtype(geo_decoder, latents))
        return logits.view(latents.shape[0], n, n, n)


def _dilate(mask: torch.Tensor) -> torch.Tensor:
    """Boolean dilation with a 3 x 3 x 3 box over the last three axes (separable, 1 byte per voxel)."""
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


class HierarchicalVolumeDecoder:
    """Coarse-to-fine decoding (see the module docstring); an approximation of the dense grid that
    gives the same mesh when the surface is resolved at the coarsest level."""

    def __init__(self, min_resolution: int = MIN_HIERARCHICAL_RESOLUTION, band: float = NEAR_SURFACE_LOGIT_BAND):
        if min_resolution < MIN_OCTREE_RESOLUTION:
            raise ValueError(f"min_resolution must be at least {MIN_OCTREE_RESOLUTION}, got {min_resolution}")
        if not band > 0:
            raise ValueError(f"band must be positive, got {band}")
        self.min_resolution = int(min_resolution)
        self.band = float(band)

    def levels(self, octree_resolution: int) -> list[int]:
        """Resolutions decoded, coarsest first: ``R`` halved while even and the half is >= ``min_resolution``."""
        levels = [int(octree_resolution)]
        while levels[0] % 2 == 0 and levels[0] // 2 >= self.min_resolution:
            levels.insert(0, levels[0] // 2)
        return levels

    def __call__(
        self,
        latents: torch.Tensor,
        geo_decoder: GeometryDecoderFn,
        bounds: float = 1.01,
        num_chunks: int = DEFAULT_NUM_CHUNKS,
        octree_resolution: int | None = None,
        mc_level: float = 0.0,
        **_: object,
    ) -> torch.Tensor:
        """Same contract as ``VanillaVolumeDecoder.__call__``; ``mc_level`` locates the surface."""
        resolution = _check_arguments(bounds, octree_resolution, num_chunks)
        levels = self.levels(resolution)
        dtype = _decoder_dtype(geo_decoder, latents)
        grid = VanillaVolumeDecoder()(latents, geo_decoder, bounds, num_chunks, levels[0])
        for level in levels[1:]:
            n = level + 1
            coarse_marked = _dilate(near_surface(grid, mc_level, self.band).any(dim=0))
            nearest = torch.arange(n, device=grid.device) // 2
            fine = grid[:, nearest][:, :, nearest][:, :, :, nearest].contiguous()
            marked = torch.zeros((n, n, n), dtype=torch.bool, device=grid.device)
            marked[::2, ::2, ::2] = coarse_marked
            flat = _dilate(marked).flatten().nonzero().squeeze(1)
            axis = grid_axis(bounds, level, latents.device)
            fine.view(fine.shape[0], -1)[:, flat] = _decode_points(latents, geo_decoder, axis, flat, num_chunks, dtype)
            logger.debug("hierarchical decoding: level %d, %d of %d points decoded", level, flat.numel(), n**3)
            grid = fine
        return grid


#: Volume decoders selectable by name (``pipe.set_volume_decoder(name)``).
VOLUME_DECODERS = {"dense": VanillaVolumeDecoder, "hierarchical": HierarchicalVolumeDecoder}
