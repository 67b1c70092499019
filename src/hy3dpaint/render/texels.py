"""UV texel table: which texels of the atlas the surface covers, and where each lies in 3-D.

The mesh is rasterized in UV space at the texture size (FACTS §9): vertex ``(u, v_r)`` goes to NDC
``(2u - 1, 2 v_r - 1)`` (``v_r = 1 - v``), so texel row ~ ``(1 - v)(T - 1)``, column ~ ``u (T - 1)``
and row 0 is v = 1. Each covered texel stores its interpolated renderer-frame position.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hy3dpaint.render.rasterizer import interpolate_covered, rasterize


@dataclass
class TexelTable:
    """Covered texels of a ``size`` x ``size`` atlas, in row-major order.

    ``positions``: float32 ``[K, 4]`` homogeneous renderer-frame points (w = 1);
    ``grid``: int64 ``[K, 2]`` (row, col); ``indices``: int64 ``[size, size]``, index into the
    table or -1 for texels no triangle covers; ``pixels``: int64 ``[K]``, flat ``row * size + col``.
    """

    positions: torch.Tensor
    grid: torch.Tensor
    indices: torch.Tensor
    pixels: torch.Tensor

    @property
    def size(self) -> int:
        return int(self.indices.shape[0])

    @property
    def mask(self) -> torch.Tensor:
        """Bool ``[size, size]``: texels covered by the surface."""
        return self.indices >= 0


def build_texel_table(
    vtx_pos: torch.Tensor, pos_idx: torch.Tensor, vtx_uv: torch.Tensor, uv_idx: torch.Tensor, texture_size: int
) -> TexelTable:
    """Rasterize the UV layout (``vtx_uv`` with v already flipped) and record each covered texel.

    ``vtx_pos [V, 3]`` with ``pos_idx [F, 3]`` are the renderer-frame positions; ``uv_idx [F, 3]``
    indexes ``vtx_uv`` face by face in the same order.
    """
    ones = torch.ones_like(vtx_uv[:, :1])
    clip = torch.cat([vtx_uv, torch.zeros_like(ones), ones], dim=1) * 2 - 1
    raster = rasterize(clip, uv_idx, texture_size)
    pixel, position = interpolate_covered(vtx_pos, raster, pos_idx)
    grid = torch.stack([pixel // texture_size, pixel % texture_size], dim=1)
    positions = torch.cat([position, torch.ones_like(position[:, :1])], dim=1)
    indices = torch.full((texture_size * texture_size,), -1, dtype=torch.int64, device=vtx_pos.device)
    indices[pixel] = torch.arange(pixel.shape[0], device=vtx_pos.device)
    return TexelTable(positions=positions, grid=grid, indices=indices.view(texture_size, texture_size), pixels=pixel)
