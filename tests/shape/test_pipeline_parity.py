"""Vector e: the whole pipeline, image -> mesh, from both weight formats."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh
from shape_testdata import (
    BOX_V,
    GUIDANCE_SCALE,
    NUM_CHUNKS,
    OCTREE_RESOLUTION,
    SEED,
    STEPS,
    load_test_image,
    max_abs,
    tiny_pipeline,
    vector,
)

from hy3dshape import MCSurfaceExtractor

VERTEX_TOLERANCE = 1e-3


def _generate(use_safetensors: bool) -> trimesh.Trimesh:
    meshes = tiny_pipeline(use_safetensors)(
        image=load_test_image(), num_inference_steps=STEPS, guidance_scale=GUIDANCE_SCALE,
        generator=torch.Generator().manual_seed(SEED), box_v=BOX_V, octree_resolution=OCTREE_RESOLUTION,
        mc_level=0.0, num_chunks=NUM_CHUNKS, output_type="trimesh",
    )
    assert isinstance(meshes, list) and len(meshes) == 1
    return meshes[0]


@pytest.mark.parametrize("use_safetensors", [False, True], ids=["ckpt", "safetensors"])
def test_image_to_mesh_has_the_same_topology_and_vertices_within_1e_3(use_safetensors):
    e = vector("e_pipeline_mesh")
    mesh = _generate(use_safetensors)
    assert isinstance(mesh, trimesh.Trimesh)
    assert len(mesh.vertices) == int(e["num_vertices"]) and len(mesh.faces) == int(e["num_faces"])
    assert np.array_equal(mesh.faces, e["faces"])
    assert max_abs(mesh.vertices, e["vertices"]) <= VERTEX_TOLERANCE
    assert mesh.is_watertight == bool(e["is_watertight"])
    assert mesh.volume > 0, "faces must point outwards"
    assert mesh.volume == pytest.approx(float(e["volume"]), rel=1e-3)
    assert mesh.area == pytest.approx(float(e["area"]), rel=1e-3)


def test_both_weight_formats_load_identical_tensors():
    from_ckpt = tiny_pipeline(False)
    from_safetensors = tiny_pipeline(True)
    for name in ("model", "vae", "conditioner"):
        first = getattr(from_ckpt, name).state_dict()
        second = getattr(from_safetensors, name).state_dict()
        assert first.keys() == second.keys()
        assert all(torch.equal(first[key], second[key]) for key in first), name


def test_marching_cubes_on_the_reference_grid_gives_the_reference_faces():
    e = vector("e_pipeline_mesh")
    grid = vector("d_vae_decode")["grid_logits"]
    (vertices, faces), = MCSurfaceExtractor()(grid, 0.0, BOX_V, OCTREE_RESOLUTION)
    assert np.array_equal(faces, e["mc_faces"][:, ::-1])
    assert max_abs(vertices, e["mc_vertices"]) <= 1e-5


def test_mesh_output_type_returns_arrays_with_outward_faces():
    e = vector("e_pipeline_mesh")
    (result,) = tiny_pipeline()(
        image=load_test_image(), num_inference_steps=STEPS, guidance_scale=GUIDANCE_SCALE,
        generator=torch.Generator().manual_seed(SEED), octree_resolution=OCTREE_RESOLUTION,
        num_chunks=NUM_CHUNKS, output_type="mesh",
    )
    assert result.mesh_v.dtype == np.float32
    assert np.array_equal(result.mesh_f, e["faces"])
    assert max_abs(result.mesh_v, e["mc_vertices"]) <= VERTEX_TOLERANCE
