"""UNet 2.5D beyond the public vectors' shapes: other depths, head dimensions and view sizes.

Tiny random UNets are built here from SD-style configs (the stage is also checked against vectors of
other configurations, so nothing may assume the public ones). Each must run at every view size that
is a multiple of 8 px, including latents whose side is not a multiple of 8, and keep the invariants
of the architecture: views are interchangeable (the output permutes with them), batch items are
independent, and the 3-D RoPE makes multiview attention depend on voxel offsets only.
"""

from __future__ import annotations

import pytest
import torch

from hy3dpaint import UNet2p5DConditionModel
from hy3dpaint.models.unet_2p5d import CACHE_VOXEL_INDICES, DINO_WIDTH, TEXT_TOKENS, TEXT_WIDTH
from hy3dpaint.models.voxel_rope import (
    VoxelIndexLevel,
    apply_rope,
    grid_levels,
    multires_voxel_indices,
    rope_tables,
)

from .tiny_weights import single_threaded_torch  # noqa: F401  (autouse fixture)

#: name -> (down blocks, up blocks, channels, heads per level). Head dim = channels / heads.
CONFIGS = {
    "one_level_head_dim_32": (("CrossAttnDownBlock2D",), ("CrossAttnUpBlock2D",), (32,), (1,)),
    "three_levels_head_dims_16_32_48": (
        ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        (16, 32, 48), (1, 1, 1)),
    "four_levels_head_dim_16": (
        ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        (16, 32, 32, 32), (1, 2, 2, 2)),
}
DINO_TOKENS = 5
VIEWS = 3


def make_unet(name: str) -> UNet2p5DConditionModel:
    down, up, channels, heads = CONFIGS[name]
    config = dict(sample_size=8, in_channels=4, out_channels=4, down_block_types=down, up_block_types=up,
                  block_out_channels=channels, layers_per_block=1, norm_num_groups=8, cross_attention_dim=TEXT_WIDTH,
                  attention_head_dim=heads, use_linear_projection=True)
    torch.manual_seed(0)
    return UNet2p5DConditionModel.from_config(config).eval()


def position_maps(batch: int, views: int, size: int, seed: int = 0) -> torch.Tensor:
    """Random surface positions in [0, 1) with a white (= 1) background frame."""
    generator = torch.Generator().manual_seed(seed)
    maps = torch.rand(batch, views, 3, size, size, generator=generator)
    border = size // 6
    maps[..., :border, :] = 1.0
    maps[..., :, -border:] = 1.0
    return maps


def inputs(batch: int, views: int, view_size: int, seed: int = 0) -> dict:
    latent = view_size // 8
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=generator)

    return dict(sample=randn(batch, 2, views, 4, latent, latent), timestep=torch.tensor(500),
                encoder_hidden_states=randn(batch, 2, TEXT_TOKENS, TEXT_WIDTH),
                embeds_normal=randn(batch, views, 4, latent, latent), embeds_position=randn(batch, views, 4, latent, latent),
                ref_latents=randn(batch, 1, 4, latent, latent), dino_hidden_states=randn(batch, DINO_TOKENS, DINO_WIDTH),
                position_maps=position_maps(batch, views, view_size, seed))


def run(unet: UNet2p5DConditionModel, kwargs: dict, cache: dict | None = None) -> torch.Tensor:
    kwargs = dict(kwargs)
    sample, timestep, text = kwargs.pop("sample"), kwargs.pop("timestep"), kwargs.pop("encoder_hidden_states")
    with torch.no_grad():
        return unet(sample, timestep, text, cache={} if cache is None else cache, **kwargs).sample


@pytest.mark.parametrize("latent, expected", [
    (64, [(64, 512), (32, 256), (16, 128), (8, 64)]),
    (12, [(12, 96), (6, 48), (3, 24), (1, 12)]),
    (10, [(10, 80), (5, 40), (2, 20), (1, 10)]),
    (6, [(6, 48), (3, 24), (1, 12)]),
])
def test_grids_are_built_with_floor_division_as_upstream(latent, expected):
    assert grid_levels(latent) == expected


def test_96_px_views_get_all_four_grids_including_the_one_cell_grid():
    levels = multires_voxel_indices(position_maps(1, VIEWS, 96).half(), 12)
    assert sorted(levels) == sorted(VIEWS * cells * cells for cells in (12, 6, 3, 1))
    for length, level in levels.items():
        assert level.indices.shape == (1, length, 3)
        assert int(level.indices.min()) >= 0 and int(level.indices.max()) <= level.resolution - 1


def test_a_grid_that_does_not_divide_the_map_is_left_out():
    """104 px (latent 13): grids 13, 6, 3, 1; 6 and 3 do not divide 104 (no UNet level has 6 x 6
    or 3 x 3 tokens: its levels are 13, 7, 4, 2)."""
    levels = multires_voxel_indices(position_maps(1, 2, 104), 13)
    assert sorted(levels) == sorted(2 * cells * cells for cells in (13, 1))


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("view_size", [64, 96, 104])
def test_forward_runs_at_any_multiple_of_8_px_and_keeps_the_sample_shape(name, view_size):
    unet = make_unet(name)
    kwargs = inputs(1, VIEWS, view_size)
    cache: dict = {}
    output = run(unet, kwargs, cache)
    latent = view_size // 8
    assert output.shape == (2 * VIEWS, 4, latent, latent)
    assert torch.isfinite(output).all()
    assert CACHE_VOXEL_INDICES in cache


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_rope_changes_the_output_where_a_level_has_a_grid(name):
    unet = make_unet(name)
    kwargs = inputs(1, VIEWS, 96)
    with_rope = run(unet, kwargs)
    without_rope = run(unet, {**kwargs, "position_maps": None})
    assert not torch.allclose(with_rope, without_rope, atol=1e-6)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_views_are_interchangeable(name):
    """Permuting the views of every per-view input permutes the output the same way."""
    unet = make_unet(name)
    kwargs = inputs(1, VIEWS, 96)
    order = torch.tensor([2, 0, 1])
    permuted = dict(kwargs, sample=kwargs["sample"][:, :, order], embeds_normal=kwargs["embeds_normal"][:, order],
                    embeds_position=kwargs["embeds_position"][:, order], position_maps=kwargs["position_maps"][:, order])
    output = run(unet, kwargs).reshape(2, VIEWS, 4, 12, 12)
    output_permuted = run(unet, permuted).reshape(2, VIEWS, 4, 12, 12)
    torch.testing.assert_close(output_permuted, output[:, order], atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["three_levels_head_dims_16_32_48", "four_levels_head_dim_16"])
def test_batch_items_are_independent(name):
    unet = make_unet(name)
    first, second = inputs(1, VIEWS, 96, seed=1), inputs(1, VIEWS, 96, seed=2)
    both = {key: torch.cat([first[key], second[key]]) if key != "timestep" else first[key] for key in first}
    output = run(unet, both)
    torch.testing.assert_close(output, torch.cat([run(unet, first), run(unet, second)]), atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("head_dim", [16, 32, 48, 64, 80])
def test_rope_attention_scores_depend_only_on_voxel_offsets(head_dim):
    """<R(p) q, R(p') k> = <R(p + s) q, R(p' + s) k> for every shift s: relative 3-D positions only."""
    generator = torch.Generator().manual_seed(head_dim)
    q, k = torch.randn(1, 1, 2, head_dim, generator=generator, dtype=torch.float64).float().unbind(2)
    positions = torch.tensor([[[3, 7, 1], [10, 2, 5]]])
    shifted = positions + torch.tensor([4, 9, 2])

    def score(indices):
        cos, sin = rope_tables(VoxelIndexLevel(indices, 32), head_dim)
        return (apply_rope(q, cos[:, :1], sin[:, :1]) * apply_rope(k, cos[:, 1:], sin[:, 1:])).sum()

    torch.testing.assert_close(score(shifted), score(positions), atol=1e-4, rtol=1e-4)
    assert rope_tables(VoxelIndexLevel(positions, 32), head_dim)[0].shape == (1, 2, head_dim)


def test_rope_rejects_head_dimensions_it_cannot_split():
    with pytest.raises(ValueError, match="divisible by 16"):
        rope_tables(VoxelIndexLevel(torch.zeros(1, 2, 3, dtype=torch.long), 8), 40)
