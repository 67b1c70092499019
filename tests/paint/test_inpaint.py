"""Inpainting parity (FACTS §10; vectors ``bake/bake.npz``) and the fast mode's promises."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hy3dpaint.inpaint import (
    fill_far_from_charts,
    inpaint_texture,
    inpaint_texture_on_device,
    push_pull_fill,
    push_pull_fill_on_device,
    vertex_inpaint,
    vertex_inpaint_on_device,
)
from hy3dpaint.render import MeshRenderer

DATA = Path(__file__).resolve().parent.parent / "data" / "paint"
META = json.loads((DATA / "meta.json").read_text())


@pytest.fixture(scope="module")
def bake():
    return np.load(DATA / "bake" / "bake.npz")


@pytest.fixture(scope="module")
def renderer():
    mesh = np.load(DATA / "mesh" / "uv_wrapped.npz")
    size = META["config"]["texture_size"]
    return MeshRenderer(mesh["vertices"], mesh["faces"], mesh["uv"], texture_size=size, render_size=size)


@pytest.fixture(scope="module")
def inpaint_mesh(bake):
    return (
        bake["mesh_for_inpaint_vtx_pos"],
        bake["mesh_for_inpaint_vtx_uv"],
        bake["mesh_for_inpaint_pos_idx"],
        bake["mesh_for_inpaint_uv_idx"],
    )


def test_renderer_gives_the_mesh_the_reference_inpaints(renderer, inpaint_mesh):
    vertices, uv, faces, uv_faces = inpaint_mesh
    np.testing.assert_allclose(renderer.normalized_input_vertices(), vertices, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(renderer.input_uv(), uv)
    np.testing.assert_array_equal(renderer.pos_idx.numpy(), faces)
    np.testing.assert_array_equal(renderer.uv_idx.numpy(), uv_faces)


@pytest.mark.parametrize("method", ["sparse", "loop"])
def test_vertex_inpaint_matches(bake, inpaint_mesh, method):
    vertices, uv, faces, uv_faces = inpaint_mesh
    texture, mask = vertex_inpaint(bake["texture_albedo"], bake["mask_albedo"], vertices, uv, faces, uv_faces, method=method)
    np.testing.assert_array_equal(mask, bake["vertex_inpaint_mask"])
    np.testing.assert_allclose(texture, bake["vertex_inpaint_texture"], rtol=0, atol=1e-5)


def test_sparse_and_loop_propagation_agree_when_most_of_the_surface_is_unpainted(bake, inpaint_mesh):
    vertices, uv, faces, uv_faces = inpaint_mesh
    sparse_mask = bake["mask_albedo"].copy()
    sparse_mask[:, 40:] = 0  # keep a few painted texels: long propagation chains, many passes
    results = [
        vertex_inpaint(bake["texture_albedo"], sparse_mask, vertices, uv, faces, uv_faces, method=method)
        for method in ("sparse", "loop")
    ]
    np.testing.assert_array_equal(results[0][1], results[1][1])
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=0, atol=1e-6)
    assert (results[0][1] > 0).sum() > (sparse_mask > 0).sum()


@pytest.mark.parametrize("material", ["albedo", "mr"])
def test_reference_mode_reproduces_the_final_textures_exactly(bake, inpaint_mesh, material):
    vertices, uv, faces, _ = inpaint_mesh
    result = inpaint_texture(bake[f"texture_{material}"], bake[f"mask_{material}"], vertices, uv, faces, mode="reference")
    assert result.dtype == np.uint8
    np.testing.assert_array_equal(result, bake[f"inpainted_{material}_uint8"])


@pytest.mark.parametrize("material", ["albedo", "mr"])
def test_fast_mode_stays_within_one_level_on_average_on_chart_texels(bake, inpaint_mesh, renderer, material):
    vertices, uv, faces, _ = inpaint_mesh
    charts = renderer.texels.mask.numpy()
    result = inpaint_texture(
        bake[f"texture_{material}"], bake[f"mask_{material}"], vertices, uv, faces, mode="fast", chart_mask=charts
    )
    difference = np.abs(result.astype(int) - bake[f"inpainted_{material}_uint8"].astype(int))
    assert difference[charts].mean() <= 1.0
    painted = bake[f"mask_{material}"] > 0
    np.testing.assert_array_equal(result[painted], bake[f"inpainted_{material}_uint8"][painted])


def test_far_fill_is_a_smooth_blend_of_painted_colours_and_leaves_the_gutter_to_ns():
    texture = np.zeros((64, 64, 3), np.uint8)
    texture[4:12, 4:12] = (10, 20, 30)
    texture[48:56, 48:56] = (200, 100, 50)
    mask = np.zeros((64, 64), np.uint8)
    mask[4:12, 4:12] = mask[48:56, 48:56] = 255
    filled, new_mask = fill_far_from_charts(texture, mask, mask > 0, gutter=2)
    np.testing.assert_array_equal(filled[mask > 0], texture[mask > 0])
    far = new_mask > mask
    assert far[0, 63] and far[32, 32] and not far[13, 13]  # texel (13, 13) is in the gutter: left to NS
    assert (filled[far] >= (10, 20, 30)).all() and (filled[far] <= (200, 100, 50)).all()
    assert tuple(filled[0, 0]) == pytest.approx((10, 20, 30), abs=12)  # near the first colour
    steps = np.abs(np.diff(filled.astype(int), axis=1))[far[:, 1:] & far[:, :-1]]
    assert steps.max() <= 16  # no hard edges in the empty atlas


def test_inpaint_rejects_unknown_modes_and_missing_chart_mask(bake, inpaint_mesh):
    vertices, uv, faces, _ = inpaint_mesh
    with pytest.raises(ValueError, match="allowed: fast, reference"):
        inpaint_texture(bake["texture_albedo"], bake["mask_albedo"], vertices, uv, faces, mode="telea")
    with pytest.raises(ValueError, match="chart_mask"):
        inpaint_texture(bake["texture_albedo"], bake["mask_albedo"], vertices, uv, faces, mode="fast")
    with pytest.raises(ValueError, match="allowed: sparse, loop"):
        vertex_inpaint(bake["texture_albedo"], bake["mask_albedo"], vertices, uv, faces, method="jacobi")


# --------------------------------------------------------------------------------------------------
# The torch path (used when the bake ran on a CUDA device; exercised here with CPU tensors)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("material", ["albedo", "mr"])
def test_device_path_in_reference_mode_reproduces_the_final_textures_exactly(bake, inpaint_mesh, material):
    vertices, uv, faces, _ = inpaint_mesh
    result = inpaint_texture_on_device(torch.from_numpy(bake[f"texture_{material}"]),
                                       torch.from_numpy(bake[f"mask_{material}"]), vertices, uv, faces, mode="reference")
    np.testing.assert_array_equal(result, bake[f"inpainted_{material}_uint8"])


def test_device_vertex_step_gives_the_numpy_step_bits(bake, inpaint_mesh):
    vertices, uv, faces, _ = inpaint_mesh
    expected = vertex_inpaint(bake["texture_albedo"], bake["mask_albedo"], vertices, uv, faces)
    texture, mask = vertex_inpaint_on_device(torch.from_numpy(bake["texture_albedo"]),
                                             torch.from_numpy(bake["mask_albedo"]), vertices, uv, faces)
    np.testing.assert_array_equal(mask.numpy(), expected[1])
    np.testing.assert_array_equal(texture.numpy(), expected[0])


@pytest.mark.parametrize("material", ["albedo", "mr"])
def test_device_path_in_fast_mode_matches_the_numpy_path_on_chart_texels(bake, inpaint_mesh, renderer, material):
    vertices, uv, faces, _ = inpaint_mesh
    charts = renderer.texels.mask.numpy()
    texture, mask = bake[f"texture_{material}"], bake[f"mask_{material}"]
    expected = inpaint_texture(texture, mask, vertices, uv, faces, mode="fast", chart_mask=charts)
    result = inpaint_texture_on_device(torch.from_numpy(texture), torch.from_numpy(mask), vertices, uv, faces,
                                       mode="fast", chart_mask=torch.from_numpy(charts))
    difference = np.abs(result.astype(int) - expected.astype(int))
    assert difference[charts].mean() <= 0.05
    assert difference.max() <= 2  # the far fill differs by float rounding only


def test_device_push_pull_matches_opencv_within_rounding():
    generator = np.random.default_rng(3)
    image = generator.integers(0, 256, (64, 64, 3)).astype(np.float32)
    known = generator.random((64, 64)) > 0.97
    expected = push_pull_fill(image, known)
    result = push_pull_fill_on_device(torch.from_numpy(image), torch.from_numpy(known)).numpy()
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-3)
