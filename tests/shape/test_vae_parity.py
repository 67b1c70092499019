"""Vector d: VAE decode (tokens), dense logit grid and logits at random query points."""

from __future__ import annotations

import pytest
import torch
from shape_testdata import BOX_V, NUM_CHUNKS, OCTREE_RESOLUTION, max_abs, tensor, tiny_pipeline, vector

from hy3dshape.volume_decoders import VanillaVolumeDecoder


def test_pipeline_divides_latents_by_the_configured_scale_factor():
    pipe = tiny_pipeline()
    assert pipe.vae.scale_factor == pytest.approx(float(vector("d_vae_decode")["scale_factor"]))
    seen = []
    handle = pipe.vae.register_forward_hook(lambda module, args, output: seen.append(args[0].clone()))
    try:
        with torch.inference_mode():
            pipe.decode_volume(tensor("d_vae_decode", "latents"), BOX_V, octree_resolution=8, num_chunks=1000,
                               mc_level=0.0)
    finally:
        handle.remove()
    assert max_abs(seen[0], vector("d_vae_decode")["scaled_latents"]) == 0.0


def test_decoded_latents_match_within_1e_4():
    with torch.inference_mode():
        decoded = tiny_pipeline().vae(tensor("d_vae_decode", "scaled_latents"))
    assert max_abs(decoded, vector("d_vae_decode")["decoded_latents"]) <= 1e-4


def test_query_logits_match_within_1e_5():
    with torch.inference_mode():
        logits = tiny_pipeline().vae.geo_decoder(queries=tensor("d_vae_decode", "query_points"),
                                                 latents=tensor("d_vae_decode", "decoded_latents"))
    assert max_abs(logits, vector("d_vae_decode")["query_logits"]) <= 1e-5


def test_grid_logits_match_within_1e_5():
    vae = tiny_pipeline().vae
    with torch.inference_mode():
        grid = vae.volume_decoder(tensor("d_vae_decode", "decoded_latents"), vae.geo_decoder, bounds=BOX_V,
                                  num_chunks=NUM_CHUNKS, octree_resolution=OCTREE_RESOLUTION)
    assert grid.dtype == torch.float32
    assert max_abs(grid, vector("d_vae_decode")["grid_logits"]) <= 1e-5


def test_chunk_size_does_not_change_the_grid():
    vae = tiny_pipeline().vae
    decoded = tensor("d_vae_decode", "decoded_latents")
    with torch.inference_mode():
        small = VanillaVolumeDecoder()(decoded, vae.geo_decoder, bounds=BOX_V, num_chunks=777, octree_resolution=16)
        whole = VanillaVolumeDecoder()(decoded, vae.geo_decoder, bounds=BOX_V, num_chunks=17**3, octree_resolution=16)
    assert torch.allclose(small, whole, atol=1e-6, rtol=0)


@pytest.mark.parametrize(("argument", "value", "message"), [
    ("octree_resolution", 4, "octree_resolution must be in"),
    ("octree_resolution", 2000, "octree_resolution must be in"),
    ("num_chunks", 0, "num_chunks"),
    ("bounds", -1.0, "bounds"),
])
def test_volume_decoder_rejects_bad_arguments(argument, value, message):
    vae = tiny_pipeline().vae
    kwargs = {"bounds": BOX_V, "num_chunks": 100, "octree_resolution": 16, argument: value}
    with pytest.raises(ValueError, match=message):
        VanillaVolumeDecoder()(tensor("d_vae_decode", "decoded_latents"), vae.geo_decoder, **kwargs)
