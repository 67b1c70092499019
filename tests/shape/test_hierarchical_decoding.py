"""Opt-in coarse-to-fine volume decoding: far fewer decoder queries, a mesh that matches the dense one."""

from __future__ import annotations

import pytest
import torch
import trimesh
from mesh_metrics import assert_same_surface
from shape_testdata import BOX_V, load_test_image, tensor, tiny_pipeline, vector

from hy3dshape import MCSurfaceExtractor
from hy3dshape.volume_decoders import HierarchicalVolumeDecoder, VanillaVolumeDecoder

RESOLUTION = 96
# The tiny model's logits are flat (84 % of the grid lies within upstream's 0.95 band of the level), so
# the test refines only around sign changes plus a thin band; the real model uses the default band.
BAND = 0.05
MIN_RESOLUTION = 24


class _CountingDecoder:
    """Wraps the geometry decoder and counts the query points it is asked for."""

    def __init__(self, geo_decoder):
        self.geo_decoder = geo_decoder
        self.query_proj = geo_decoder.query_proj
        self.points = 0

    def __call__(self, queries, latents):
        self.points += queries.shape[1]
        return self.geo_decoder(queries=queries, latents=latents)


def _mesh(grid: torch.Tensor) -> trimesh.Trimesh:
    (vertices, faces), = MCSurfaceExtractor()(grid, 0.0, BOX_V, RESOLUTION)
    return trimesh.Trimesh(vertices, faces)


@pytest.fixture(scope="module")
def grids():
    vae = tiny_pipeline().vae
    with torch.inference_mode():
        tokens = vae(tensor("c_sampler", "final_latents") * (1.0 / vae.scale_factor))
        dense_counter, fine_counter = _CountingDecoder(vae.geo_decoder), _CountingDecoder(vae.geo_decoder)
        dense = VanillaVolumeDecoder()(tokens, dense_counter, bounds=BOX_V, num_chunks=20000,
                                       octree_resolution=RESOLUTION)
        hierarchical = HierarchicalVolumeDecoder(min_resolution=MIN_RESOLUTION, band=BAND)(
            tokens, fine_counter, bounds=BOX_V, num_chunks=20000, octree_resolution=RESOLUTION)
    return dense, hierarchical, dense_counter.points, fine_counter.points


def test_levels_halve_the_resolution_down_to_the_minimum():
    assert HierarchicalVolumeDecoder().levels(384) == [96, 192, 384]
    assert HierarchicalVolumeDecoder().levels(256) == [64, 128, 256]
    assert HierarchicalVolumeDecoder().levels(48) == [48]
    assert HierarchicalVolumeDecoder().levels(129) == [129]
    assert HierarchicalVolumeDecoder(min_resolution=MIN_RESOLUTION).levels(RESOLUTION) == [24, 48, 96]


def test_far_fewer_points_are_decoded(grids):
    _dense, _hierarchical, dense_points, hierarchical_points = grids
    assert dense_points == (RESOLUTION + 1) ** 3
    assert hierarchical_points < 0.5 * dense_points


def test_grid_is_exact_near_the_surface_and_has_the_right_sign_everywhere(grids):
    dense, hierarchical, *_ = grids
    assert not torch.isnan(hierarchical).any()
    assert torch.equal(dense > 0, hierarchical > 0)


def test_mesh_matches_the_dense_mesh(grids):
    dense, hierarchical, *_ = grids
    assert_same_surface(_mesh(hierarchical), _mesh(dense), cell=2 * BOX_V / RESOLUTION)


def test_pipeline_can_switch_to_hierarchical_decoding():
    pipe = tiny_pipeline()
    e = vector("e_pipeline_mesh")
    try:
        pipe.set_volume_decoder("hierarchical")
        assert isinstance(pipe.vae.volume_decoder, HierarchicalVolumeDecoder)
        (mesh,) = pipe(image=load_test_image(), num_inference_steps=6, guidance_scale=5.0,
                       generator=torch.Generator().manual_seed(42), octree_resolution=48, num_chunks=5000)
    finally:
        pipe.set_volume_decoder("dense")
    assert len(mesh.faces) == int(e["num_faces"])  # R = 48 is a single level: identical to dense decoding
    with pytest.raises(ValueError, match="unknown volume decoder 'flash'; allowed"):
        pipe.set_volume_decoder("flash")
