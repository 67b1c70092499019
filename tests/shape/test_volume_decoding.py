"""Exact speed-ups of volume decoding: latent keys/values once per request, chunk size by device, the
dense grid unchanged (it stays the parity reference), progress per chunk."""

from __future__ import annotations

import pytest
import torch
from shape_testdata import BOX_V, tensor, tiny_pipeline

from hy3dshape.volume_decoders import (
    CPU_DECODE_MEMORY_BUDGET_BYTES,
    MAX_AUTO_NUM_CHUNKS_CPU,
    MIN_AUTO_NUM_CHUNKS,
    FlashVDMVolumeDecoder,
    HierarchicalVolumeDecoder,
    RefinementSettings,
    VanillaVolumeDecoder,
    auto_num_chunks,
    bytes_per_query,
    grid_axis,
    grid_points,
)

RESOLUTION = 32


@pytest.fixture(scope="module")
def tokens():
    vae = tiny_pipeline().vae
    with torch.inference_mode():
        return vae(tensor("c_sampler", "final_latents") * (1.0 / vae.scale_factor))


def _upstream_grid(tokens, geo_decoder, resolution, num_chunks=8000):
    """Upstream's loop: every chunk calls the geometry decoder on the latents (keys/values recomputed)."""
    n = resolution + 1
    points = grid_points(grid_axis(BOX_V, resolution), torch.arange(n**3))
    chunks = [geo_decoder(queries=points[None, start:start + num_chunks], latents=tokens)[..., 0]
              for start in range(0, n**3, num_chunks)]
    return torch.cat(chunks, dim=1).view(1, n, n, n)


def test_dense_grid_equals_upstreams_chunked_grid(tokens):
    geo_decoder = tiny_pipeline().vae.geo_decoder
    with torch.inference_mode():
        expected = _upstream_grid(tokens, geo_decoder, RESOLUTION)
        for num_chunks in (None, 1000, 8000):
            grid = VanillaVolumeDecoder()(tokens, geo_decoder, BOX_V, num_chunks, RESOLUTION)
            assert torch.allclose(grid, expected, atol=1e-6, rtol=0), num_chunks


def test_latent_keys_and_values_are_computed_once_per_request(tokens):
    geo_decoder = tiny_pipeline().vae.geo_decoder
    calls = []
    handle = geo_decoder.cross_attn_decoder.attn.c_kv.register_forward_hook(lambda *args: calls.append(1))
    try:
        with torch.inference_mode():
            decoders = [VanillaVolumeDecoder(), HierarchicalVolumeDecoder(min_resolution=16),
                        FlashVDMVolumeDecoder(refinement=RefinementSettings(min_resolution=16))]
            for decoder in decoders:
                calls.clear()
                decoder(tokens, geo_decoder, BOX_V, 500, RESOLUTION)
                assert len(calls) == 1, type(decoder).__name__
    finally:
        handle.remove()


def test_explicit_num_chunks_sets_the_points_per_decoder_call(tokens):
    geo_decoder = tiny_pipeline().vae.geo_decoder
    sizes = []
    handle = geo_decoder.query_proj.register_forward_hook(lambda m, args, out: sizes.append(args[0].shape[1]))
    try:
        with torch.inference_mode():
            VanillaVolumeDecoder()(tokens, geo_decoder, BOX_V, 5000, RESOLUTION)
    finally:
        handle.remove()
    assert sizes[:-1] == [5000] * (len(sizes) - 1) and sum(sizes) == (RESOLUTION + 1) ** 3


def test_automatic_chunk_size_follows_the_memory_budget(tokens):
    dtype = torch.float32
    chunk = auto_num_chunks(tokens, dtype, heads=2)
    assert MIN_AUTO_NUM_CHUNKS <= chunk <= MAX_AUTO_NUM_CHUNKS_CPU
    assert chunk == min(MAX_AUTO_NUM_CHUNKS_CPU, CPU_DECODE_MEMORY_BUDGET_BYTES // bytes_per_query(tokens, dtype, 2))
    full_size = torch.zeros(1, 4096, 1024, dtype=torch.float16)  # the official decoder: bounded by the budget
    assert auto_num_chunks(full_size, torch.float16, heads=16) < 8000 < auto_num_chunks(tokens, dtype, heads=2)
    assert bytes_per_query(full_size, torch.float16, 16, scores_materialised=False) < bytes_per_query(
        full_size, torch.float16, 16)


def test_dense_decoding_reports_every_chunk(tokens):
    calls = []
    with torch.inference_mode():
        VanillaVolumeDecoder()(tokens, tiny_pipeline().vae.geo_decoder, BOX_V, 10000, RESOLUTION,
                               callback=lambda *args: calls.append(args))
    chunks = -(-((RESOLUTION + 1) ** 3) // 10000)
    assert calls == [("shape:decode", done, chunks) for done in range(1, chunks + 1)]


def test_a_raising_callback_stops_decoding(tokens):
    class CancelledError(Exception):
        pass

    def cancel(phase, done, total):
        raise CancelledError(phase)

    with torch.inference_mode(), pytest.raises(CancelledError, match="shape:decode"):
        VanillaVolumeDecoder()(tokens, tiny_pipeline().vae.geo_decoder, BOX_V, 1000, RESOLUTION, callback=cancel)
