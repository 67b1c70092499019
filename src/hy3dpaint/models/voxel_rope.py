"""Voxel indices from position maps and the 3-D rotary embedding of multiview attention (FACTS §7.4).

Each view's position map (the surface point seen by every pixel, in [0, 1]^3) is pooled onto a few
token grids, one per UNet resolution, and quantised to integer voxel coordinates. Multiview
attention then rotates its queries and keys by the RoPE angles of those coordinates, so tokens that
see the same 3-D point in different views line up.

The arithmetic follows upstream bit for bit: fp16 averages, round-half-to-even quantisation, and the
in-place zeroing of background pixels that makes the coarser grids see zeros (see
``multires_voxel_indices``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: Base of the RoPE frequencies.
ROPE_THETA = 10000.0
#: Head dimensions must be a multiple of this to split into x (3/8), y (3/8) and z (1/4) parts.
ROPE_HEAD_DIM_MULTIPLE = 16
#: A grid cell is dropped (index 0) when fewer than (pixels per cell) // this are object pixels.
CELL_PIXELS_PER_REQUIRED_VALID_PIXEL = 16
#: Number of grids: latent size h, h // 2, h // 4, h // 8 (the UNet's transformer resolutions, as
#: upstream builds them whatever the UNet's depth).
NUM_GRID_LEVELS = 4
#: Voxel resolution of the finest grid, as a multiple of the latent size.
FINEST_VOXELS_PER_LATENT_PIXEL = 8
#: Value of a background pixel in every channel of a position map.
BACKGROUND_VALUE = 1.0


@dataclass(frozen=True)
class VoxelIndexLevel:
    """Voxel indices of one grid: ``indices`` [B, N*g*g, 3] int64 in [0, resolution - 1]."""

    indices: torch.Tensor
    resolution: int


def grid_levels(latent_size: int) -> list[tuple[int, int]]:
    """``(cells per side, voxel resolution)`` of the grids for a latent of side ``latent_size``.

    As upstream: ``latent_size // 2**k`` cells (floor division, so a latent of 12 gives 12, 6, 3
    and 1) at ``8 * latent_size / 2**k`` voxels, for k = 0 .. ``NUM_GRID_LEVELS`` - 1. Grids that
    would have no cell (latents below 8) are left out.
    """
    if isinstance(latent_size, bool) or not isinstance(latent_size, int) or latent_size < 1:
        raise ValueError(f"latent size must be a positive integer, got {latent_size!r}")
    levels = []
    for level in range(NUM_GRID_LEVELS):
        cells = latent_size // 2**level
        if cells:
            levels.append((cells, FINEST_VOXELS_PER_LATENT_PIXEL * latent_size // 2**level))
    return levels


def _voxel_indices_one_grid(
    maps_fp16: torch.Tensor, cells_per_side: int, voxel_resolution: int
) -> torch.Tensor:
    """Pool fp16 maps [B, N, 3, H, W] onto a ``cells_per_side`` grid; zero background **in place**."""
    batch, views, channels, height, width = maps_fp16.shape
    if height % cells_per_side or width % cells_per_side:
        raise ValueError(
            f"position map size {height}x{width} is not divisible by the grid size {cells_per_side}"
        )
    valid = (maps_fp16 != BACKGROUND_VALUE).all(dim=2, keepdim=True)
    maps_fp16.masked_fill_(~valid, 0)  # upstream's in-place effect, kept on purpose (FACTS §7.4)

    cell_h, cell_w = height // cells_per_side, width // cells_per_side
    shape = (batch, views, -1, cells_per_side, cell_h, cells_per_side, cell_w)
    sums = maps_fp16.float().reshape(shape).sum(dim=(4, 6)).half()
    counts = valid.float().reshape(shape).sum(dim=(4, 6))
    means = sums / counts.clamp(min=1).half()
    enough = counts >= (cell_h * cell_w) // CELL_PIXELS_PER_REQUIRED_VALID_PIXEL
    means = torch.where(enough, means, torch.zeros_like(means))
    scaled = means.clamp(0, 1) * (voxel_resolution - 1)  # fp16 arithmetic, as upstream
    indices = torch.round(scaled).long()  # round half to even, like upstream
    return indices.permute(0, 1, 3, 4, 2).reshape(batch, views * cells_per_side * cells_per_side, channels)


def multires_voxel_indices(position_maps: torch.Tensor, latent_size: int) -> dict[int, VoxelIndexLevel]:
    """Voxel indices of the grids of ``grid_levels(latent_size)``, keyed by sequence length ``N * g * g``.

    ``position_maps``: [B, N, 3, H, W] in [0, 1], background pixels exactly 1 in every channel.
    Computed in fp16 as upstream. Upstream quirk, reproduced: the maps are converted with
    ``.half()``, which returns the caller's own tensor when it is already fp16, and the background
    is zeroed in that tensor. So with fp16 input the caller's tensor is modified and the coarser
    grids count the (now zero) background pixels as valid; with any other dtype each grid works on
    a fresh fp16 copy and sees clean maps.

    A grid whose cell count does not divide the map size (upstream stops with an assertion there)
    is left out: no UNet level has that many tokens, so multiview attention never looks it up.
    """
    if position_maps.ndim != 5 or position_maps.shape[2] != 3:
        raise ValueError(f"position_maps must be [B, N, 3, H, W], got {list(position_maps.shape)}")
    levels: dict[int, VoxelIndexLevel] = {}
    views, height, width = position_maps.shape[1], position_maps.shape[3], position_maps.shape[4]
    for cells_per_side, voxel_resolution in grid_levels(latent_size):
        if height % cells_per_side or width % cells_per_side:
            continue
        maps_fp16 = position_maps.half()  # the same tensor when already fp16 (upstream's behaviour)
        indices = _voxel_indices_one_grid(maps_fp16, cells_per_side, voxel_resolution)
        levels[views * cells_per_side * cells_per_side] = VoxelIndexLevel(indices, voxel_resolution)
    return levels


def _rope_1d(positions: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin [..., dim] (fp32) of 1-D RoPE at integer ``positions``, pairs interleaved."""
    exponents = torch.arange(0, dim, 2, dtype=torch.float32, device=positions.device) / dim
    inv_freq = 1.0 / (ROPE_THETA**exponents)
    angles = positions.float().unsqueeze(-1) * inv_freq
    return angles.cos().repeat_interleave(2, dim=-1), angles.sin().repeat_interleave(2, dim=-1)


def rope_tables(level: VoxelIndexLevel, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE cos and sin tables [B, n, head_dim] (fp32) for the voxel indices of one grid.

    The head dimension is split x: 3/8, y: 3/8, z: 1/4 (in the position-map channel order),
    each part a 1-D RoPE with base ``ROPE_THETA`` over the integer voxel coordinate.
    """
    if head_dim % ROPE_HEAD_DIM_MULTIPLE:
        raise ValueError(f"RoPE needs a head dimension divisible by {ROPE_HEAD_DIM_MULTIPLE}, got {head_dim}")
    parts = (3 * head_dim // 8, 3 * head_dim // 8, head_dim // 4)
    tables = [_rope_1d(level.indices[..., axis], part_dim) for axis, part_dim in enumerate(parts)]
    return torch.cat([c for c, _ in tables], dim=-1), torch.cat([s for _, s in tables], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` [..., n, d] by interleaved-pair RoPE: ``x * cos + rot(x) * sin``, in fp32.

    ``rot`` maps each pair (a, b) to (-b, a). ``cos``/``sin`` broadcast against ``x``.
    """
    x32 = x.float()
    pairs = x32.unflatten(-1, (-1, 2))
    rotated = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
    return (x32 * cos + rotated * sin).to(x.dtype)
