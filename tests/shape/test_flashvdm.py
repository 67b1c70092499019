"""FlashVDM volume decoding: coarse to fine near the surface, adaptive key/value selection that
degrades to exact attention when attention is flat, NaN far from the surface filled by the extractor,
and a mesh that matches the dense one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import trimesh
from mesh_metrics import symmetric_mean_chamfer
from shape_testdata import BOX_V, load_test_image, tensor, tiny_pipeline

from hy3dshape import MCSurfaceExtractor
from hy3dshape.surface_extractors import fill_undecoded
from hy3dshape.volume_decoders import (
    FlashVDMVolumeDecoder,
    KVSelection,
    RefinementSettings,
    VanillaVolumeDecoder,
    selected_token_count,
)

RESOLUTION = 96
MIN_RESOLUTION = 24  # levels 24, 48, 96: the whole coarse-to-fine path at a test's cost
CELL = 2 * BOX_V / RESOLUTION


class _CountingDecoder:
    """The geometry decoder, counting the query points it decodes."""

    def __init__(self, geo_decoder):
        self.geo_decoder, self.points = geo_decoder, 0
        self.query_proj, self.cross_attn_decoder = geo_decoder.query_proj, geo_decoder.cross_attn_decoder

    def latent_kv(self, latents):
        return self.geo_decoder.latent_kv(latents)

    def decode_kv(self, queries, kv, attention=None):
        self.points += queries.shape[1]
        return self.geo_decoder.decode_kv(queries, kv, attention)


def _mesh(grid) -> trimesh.Trimesh:
    (vertices, faces), = MCSurfaceExtractor()(grid, 0.0, BOX_V, RESOLUTION)
    return trimesh.Trimesh(vertices, faces)


@pytest.fixture(scope="module")
def grids():
    vae = tiny_pipeline().vae
    counter = _CountingDecoder(vae.geo_decoder)
    calls = []
    decoder = FlashVDMVolumeDecoder(refinement=RefinementSettings(min_resolution=MIN_RESOLUTION))
    with torch.inference_mode():
        tokens = vae(tensor("c_sampler", "final_latents") * (1.0 / vae.scale_factor))
        dense = VanillaVolumeDecoder()(tokens, vae.geo_decoder, BOX_V, None, RESOLUTION)
        sparse = decoder(tokens, counter, BOX_V, None, RESOLUTION, callback=lambda *args: calls.append(args))
    return dense, sparse, counter.points, calls, decoder


def test_levels_halve_down_to_upstreams_coarsest_and_end_at_r():
    assert FlashVDMVolumeDecoder().levels(256) == [64, 128, 256]
    assert FlashVDMVolumeDecoder().levels(384) == [96, 192, 384]
    assert FlashVDMVolumeDecoder().levels(100) == [100]


def test_only_cells_near_the_surface_are_decoded(grids):
    dense, sparse, points, _calls, decoder = grids
    assert points == decoder.last_decoded_points < 0.5 * (RESOLUTION + 1) ** 3
    assert torch.isnan(sparse).any(), "points never decoded are NaN, as upstream"
    decoded = ~torch.isnan(sparse)
    assert torch.equal(sparse[decoded] > 0, dense[decoded] > 0)
    near = (dense[:, 1:] > 0) != (dense[:, :-1] > 0)  # every dense sign change along x is decoded
    assert decoded[:, 1:][near].all() and decoded[:, :-1][near].all()


def test_mesh_matches_the_dense_mesh(grids):
    dense, sparse, *_ = grids
    mesh, reference = _mesh(sparse), _mesh(dense)
    assert symmetric_mean_chamfer(mesh.vertices, reference.vertices) <= 1.0 * CELL
    assert abs(len(mesh.faces) - len(reference.faces)) <= 0.05 * len(reference.faces)


def test_progress_is_reported_per_level(grids):
    *_, calls, _decoder = grids
    assert calls == [("shape:decode", 1, 3), ("shape:decode", 2, 3), ("shape:decode", 3, 3)]


def test_flat_attention_falls_back_to_exact_attention():
    torch.manual_seed(0)
    query, key, value = (torch.randn(1, 2, n, 16) * 0.05 for n in (64, 96, 96))
    selection = KVSelection()
    assert torch.allclose(selection.attend_block(query, key, value), F.scaled_dot_product_attention(query, key, value))
    assert selection.stats["dense_blocks"] == selection.stats["blocks"] == 1


def test_a_request_with_flat_attention_stops_probing_and_attends_densely():
    torch.manual_seed(0)
    query, key, value = torch.randn(1, 2, 640, 16) * 0.05, torch.randn(1, 2, 96, 16), torch.randn(1, 2, 96, 16)
    selection = KVSelection(give_up_after_blocks=8)
    attention = selection.for_blocks([10] * 64)
    for _ in range(2):
        assert torch.allclose(attention(query, key, value), F.scaled_dot_product_attention(query, key, value),
                              atol=1e-6)
    assert selection.gave_up and selection.stats["blocks"] == selection.stats["dense_blocks"] == 128
    selection.reset()
    assert not selection.gave_up and selection.stats["blocks"] == 0


def test_peaked_attention_keeps_a_third_of_the_tokens():
    torch.manual_seed(0)
    key, value = torch.randn(1, 2, 96, 16), torch.randn(1, 2, 96, 16)
    query = key[:, :, :8].repeat_interleave(8, dim=2) * 6.0  # every query aims at one of 8 tokens
    seen = []
    selection = KVSelection(topk_mode="merge")
    original = F.scaled_dot_product_attention

    def spy(q, k, v):
        seen.append(k.shape[2])
        return original(q, k, v)

    torch.nn.functional.scaled_dot_product_attention = spy
    try:
        out = selection.attend_block(query, key, value)
    finally:
        torch.nn.functional.scaled_dot_product_attention = original
    assert seen == [selected_token_count(96)] == [32]
    assert selection.stats["dense_blocks"] == 0
    assert torch.allclose(out, original(query, key, value), atol=1e-2)


def test_selected_token_counts_are_upstreams():
    assert selected_token_count(4096) == 1365
    assert selected_token_count(3072) == 1024
    assert selected_token_count(512) == 256


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="topk_mode"):
        FlashVDMVolumeDecoder(topk_mode="max")
    with pytest.raises(ValueError, match="min_resolution"):
        RefinementSettings(min_resolution=2)
    with pytest.raises(ValueError, match="mc_algo"):
        tiny_pipeline().enable_flashvdm(mc_algo="dmc")


def test_nan_cells_take_the_sign_of_their_decoded_neighbours():
    n = 40
    axis = np.arange(n) - n / 2
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    field = (10.0 - np.sqrt(x**2 + y**2 + z**2)).astype(np.float32)  # a sphere, positive inside
    sparse = np.where(np.abs(field) < 3.0, field, np.nan).astype(np.float32)
    filled = fill_undecoded(sparse)
    assert not np.isnan(filled).any()
    assert np.array_equal(filled > 0, field > 0)
    (expected_v, expected_f), = MCSurfaceExtractor()(field, 0.0, 1.0, n - 1)
    (vertices, faces), = MCSurfaceExtractor()(sparse, 0.0, 1.0, n - 1)
    assert len(faces) == len(expected_f) and np.allclose(np.sort(vertices, axis=0), np.sort(expected_v, axis=0))
    assert fill_undecoded(field) is field


def test_pipeline_switches_to_flashvdm_and_back():
    pipe = tiny_pipeline()
    try:
        pipe.enable_flashvdm()
        assert isinstance(pipe.vae.volume_decoder, FlashVDMVolumeDecoder)
        assert pipe.vae.volume_decoder.kv_selection.topk_mode == "mean"
        pipe.enable_flashvdm(adaptive_kv_selection=False, topk_mode="merge")
        assert pipe.vae.volume_decoder.kv_selection is None
        pipe.set_volume_decoder("flashvdm")
        assert isinstance(pipe.vae.volume_decoder, FlashVDMVolumeDecoder)
        (mesh,) = pipe(image=load_test_image(), num_inference_steps=3, generator=torch.Generator().manual_seed(1),
                       octree_resolution=32)
        assert len(mesh.faces) > 0
        pipe.enable_flashvdm(enabled=False)
        assert isinstance(pipe.vae.volume_decoder, VanillaVolumeDecoder)
    finally:
        pipe.set_volume_decoder("dense")
