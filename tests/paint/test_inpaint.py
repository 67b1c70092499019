"""Inpainting parity (FACTS §10; vectors ``bake/bake.npz``) and the fast mode's promises."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from hy3dpaint.inpaint import (
    INPAINT_RADIUS,
    NEAREST_BAND,
    FarFill,
    fill_far_from_charts,
    inpaint_texture,
    inpaint_textures,
    vertex_inpaint,
    vertex_inpaint_on_device,
    vertex_inpaint_textures,
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


def _two_squares() -> tuple[np.ndarray, np.ndarray]:
    texture = np.zeros((64, 64, 3), np.uint8)
    texture[4:12, 4:12] = (10, 20, 30)
    texture[48:56, 48:56] = (200, 100, 50)
    mask = np.zeros((64, 64), np.uint8)
    mask[4:12, 4:12] = mask[48:56, 48:56] = 255
    return texture, mask


def test_far_fill_extends_the_nearest_colour_then_blends_smoothly_and_leaves_the_gutter_to_ns():
    texture, mask = _two_squares()
    filled, new_mask = fill_far_from_charts(texture, mask, mask > 0, gutter=2)
    np.testing.assert_array_equal(filled[mask > 0], texture[mask > 0])
    far = new_mask > mask
    assert far[0, 63] and far[32, 32] and not far[13, 13]  # texel (13, 13) is in the gutter: left to NS
    # Just beyond the gutter: the nearest painted colour, what NS would extend there.
    assert tuple(filled[4, 14]) == (10, 20, 30) and tuple(filled[57 + 2, 52]) == (200, 100, 50)
    assert (filled[far] >= (10, 20, 30)).all() and (filled[far] <= (200, 100, 50)).all()
    beyond = far.copy()
    beyond[cv2.dilate((mask > 0).astype(np.uint8), np.ones((2 * (2 + NEAREST_BAND) + 1,) * 2, np.uint8)) > 0] = False
    steps = np.abs(np.diff(filled.astype(int), axis=1))[beyond[:, 1:] & beyond[:, :-1]]
    assert steps.max() <= 16  # no hard edges in the empty atlas


def test_the_nearest_band_covers_what_ns_reads_around_the_gutter():
    assert NEAREST_BAND > INPAINT_RADIUS
    texture, mask = _two_squares()
    plan = FarFill.plan(mask, mask > 0, gutter=2)
    gutter = (mask == 0) & (plan.mask == 0)
    reach = cv2.dilate(gutter.astype(np.uint8), np.ones((2 * INPAINT_RADIUS + 1,) * 2, np.uint8)) > 0
    outside = reach & (mask == 0) & ~gutter
    assert outside.any() and plan.band[outside].all()


def test_far_fill_leaves_a_texture_alone_when_nothing_is_far_or_nothing_is_painted():
    texture, mask = _two_squares()
    assert FarFill.plan(np.zeros_like(mask), mask > 0) is None
    assert FarFill.plan(mask, np.ones((64, 64), bool)) is None
    same, same_mask = fill_far_from_charts(texture, np.zeros_like(mask), mask > 0)
    assert same is texture and not same_mask.any()


@pytest.mark.parametrize("mode", ["reference", "fast"])
def test_materials_inpainted_together_get_what_each_gets_alone(bake, inpaint_mesh, renderer, mode):
    vertices, uv, faces, _ = inpaint_mesh
    charts = renderer.texels.mask.numpy()
    mask = bake["mask_albedo"]
    textures = {"albedo": bake["texture_albedo"], "mr": bake["texture_mr"],
                "one channel": bake["texture_mr"][..., 1:2].copy()}
    finished = []
    together = inpaint_textures(textures, mask, vertices, uv, faces, chart_mask=charts, mode=mode,
                                on_filled=finished.append)
    assert finished == list(textures)
    for name, texture in textures.items():
        alone = inpaint_texture(texture, mask, vertices, uv, faces, chart_mask=charts, mode=mode)
        np.testing.assert_array_equal(together[name].reshape(alone.shape), alone)


def test_vertex_step_of_several_textures_gives_each_its_own_numbers(bake, inpaint_mesh):
    vertices, uv, faces, uv_faces = inpaint_mesh
    mask = bake["mask_albedo"].copy()
    mask[:, 40:] = 0  # many passes
    textures = [bake["texture_albedo"], bake["texture_mr"][..., :2].copy()]
    together, together_mask = vertex_inpaint_textures(textures, mask, vertices, uv, faces, uv_faces)
    for texture, result in zip(textures, together):
        alone, alone_mask = vertex_inpaint(texture, mask, vertices, uv, faces, uv_faces)
        np.testing.assert_array_equal(result, alone)
        np.testing.assert_array_equal(together_mask, alone_mask)


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
    result = inpaint_textures({material: torch.from_numpy(bake[f"texture_{material}"])},
                              torch.from_numpy(bake[f"mask_{material}"]), vertices, uv, faces, mode="reference",
                              torch_vertex_step=True)
    np.testing.assert_array_equal(result[material], bake[f"inpainted_{material}_uint8"])


def test_device_vertex_step_gives_the_numpy_step_bits(bake, inpaint_mesh):
    vertices, uv, faces, _ = inpaint_mesh
    expected = vertex_inpaint(bake["texture_albedo"], bake["mask_albedo"], vertices, uv, faces)
    texture, mask = vertex_inpaint_on_device(torch.from_numpy(bake["texture_albedo"]),
                                             torch.from_numpy(bake["mask_albedo"]), vertices, uv, faces)
    np.testing.assert_array_equal(mask.numpy(), expected[1])
    np.testing.assert_array_equal(texture.numpy(), expected[0])


@pytest.mark.parametrize("material", ["albedo", "mr"])
def test_device_path_in_fast_mode_gives_the_numpy_path_bits(bake, inpaint_mesh, renderer, material):
    vertices, uv, faces, _ = inpaint_mesh
    charts = renderer.texels.mask.numpy()
    texture, mask = bake[f"texture_{material}"], bake[f"mask_{material}"]
    expected = inpaint_texture(texture, mask, vertices, uv, faces, mode="fast", chart_mask=charts)
    result = inpaint_textures({material: torch.from_numpy(texture)}, torch.from_numpy(mask), vertices, uv, faces,
                              mode="fast", chart_mask=torch.from_numpy(charts), torch_vertex_step=True)
    np.testing.assert_array_equal(result[material], expected)


# --------------------------------------------------------------------------------------------------
# Fast mode on a baked atlas with an empty part: chart texels as in the reference mode
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def torus_bake():
    """A torus unwrapped into a 512^2 atlas and baked from four side views only, so the top and the
    bottom (and the inside of the ring) are holes that reach the chart borders."""
    import trimesh

    from hy3dpaint.bake import bake_materials
    from hy3dpaint.render import to_uint8_image
    from hy3dpaint.uv import mesh_uv_wrap
    from hy3dpaint.view_selection import View

    mesh = mesh_uv_wrap(trimesh.creation.torus(major_radius=1.0, minor_radius=0.4, major_sections=48,
                                               minor_sections=24), texture_size=512)
    renderer = MeshRenderer.from_trimesh(mesh, texture_size=512, render_size=256)
    views = [View(0.0, azimuth, 1.0) for azimuth in (0.0, 90.0, 180.0, 270.0)]
    positions = [to_uint8_image(renderer.render_position(view.elevation, view.azimuth)) for view in views]
    stripes = [np.where((p.astype(int).sum(axis=2) // 24 % 2 == 0)[..., None], p, 255 - p).astype(np.uint8)
               for p in positions]
    baked = bake_materials(renderer, {"albedo": stripes, "mr": positions}, views)
    return renderer, np.asarray(mesh.faces), baked


def test_fast_mode_gives_the_reference_chart_texels_where_the_far_fill_is_used(torus_bake):
    renderer, faces, baked = torus_bake
    vertices, uv = renderer.normalized_input_vertices(), renderer.input_uv()
    charts = renderer.texels.mask.numpy()
    mask = baked["albedo"][1]
    textures = {name: texture for name, (texture, _) in baked.items()}
    assert ((mask == 0) & charts).mean() > 0.05  # real holes
    _, vertex_mask = vertex_inpaint(textures["albedo"], mask, vertices, uv, faces)
    plan = FarFill.plan(vertex_mask, charts)
    assert plan is not None and plan.band.any() and plan.beyond.any()
    fast = inpaint_textures(textures, mask, vertices, uv, faces, chart_mask=charts)
    reference = inpaint_textures(textures, mask, vertices, uv, faces, mode="reference")
    for name in textures:
        difference = np.abs(fast[name].astype(int) - reference[name].astype(int))[charts]
        assert difference.mean() <= 0.01, name
        assert (difference > 0).mean() <= 0.001, name
