"""Renderer parity (FACTS §3, §5, §6, §9) and rasterizer promises.

Vectors: ``mesh/uv_wrapped.npz`` (renderer input, so these checks do not depend on the unwrapper),
``mesh/renderer_state.npz`` and ``render/renders.npz``; tolerances from ``tests/data/paint/README.md``.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hy3dpaint.render import MeshRenderer, interpolate, rasterize, to_uint8_image
from hy3dpaint.render.rasterizer import screen_coordinates

DATA = Path(__file__).resolve().parent.parent / "data" / "paint"
META = json.loads((DATA / "meta.json").read_text())
RENDER_SIZE = META["config"]["render_size"]
TEXTURE_SIZE = META["config"]["texture_size"]
VIEW_SIZE = META["config"]["view_size"]
SELECTED = list(zip(META["geometry"]["selected"]["elevs"], META["geometry"]["selected"]["azims"]))


@pytest.fixture(scope="module")
def renderer():
    mesh = np.load(DATA / "mesh" / "uv_wrapped.npz")
    return MeshRenderer(mesh["vertices"], mesh["faces"], mesh["uv"], texture_size=TEXTURE_SIZE, render_size=RENDER_SIZE)


@pytest.fixture(scope="module")
def state():
    return np.load(DATA / "mesh" / "renderer_state.npz")


@pytest.fixture(scope="module")
def renders():
    return np.load(DATA / "render" / "renders.npz")


# --------------------------------------------------------------------------------------------------
# Renderer state
# --------------------------------------------------------------------------------------------------


def test_normalisation_to_the_renderer_frame_matches(renderer, state):
    np.testing.assert_allclose(renderer.vtx_pos.numpy(), state["vtx_pos"], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(renderer.pos_idx.numpy(), state["pos_idx"])
    np.testing.assert_allclose(renderer.normalization.center, state["mesh_normalize_scale_center"][0], atol=1e-6)
    assert renderer.normalization.scale == pytest.approx(float(state["mesh_normalize_scale_factor"]), rel=1e-6)
    assert np.linalg.norm(renderer.vtx_pos.numpy(), axis=1).max() == pytest.approx(float(state["scale_factor"]) / 2, rel=1e-6)


def test_uvs_are_stored_with_v_flipped(renderer, state):
    np.testing.assert_allclose(renderer.vtx_uv.numpy(), state["vtx_uv"], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(renderer.uv_idx.numpy(), state["uv_idx"])


def test_texel_table_matches(renderer, state):
    texels = renderer.texels
    np.testing.assert_array_equal(texels.indices.numpy(), state["texture_indices"])
    np.testing.assert_array_equal(texels.grid.numpy(), state["tex_grid"])
    np.testing.assert_allclose(texels.positions.numpy(), state["tex_position"], rtol=0, atol=1e-6)


def test_input_frame_round_trip(renderer):
    mesh = np.load(DATA / "mesh" / "uv_wrapped.npz")
    np.testing.assert_allclose(renderer.input_vertices(), mesh["vertices"], rtol=0, atol=1e-6)
    bake = np.load(DATA / "bake" / "bake.npz")
    np.testing.assert_allclose(renderer.normalized_input_vertices(), bake["mesh_for_inpaint_vtx_pos"], rtol=0, atol=1e-6)


# --------------------------------------------------------------------------------------------------
# Renders
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("view", range(len(SELECTED)))
def test_face_id_renders_are_exact(renderer, renders, view):
    face_ids = renderer.render_face_ids(*SELECTED[view]).numpy()
    assert face_ids.dtype == np.int32
    np.testing.assert_array_equal(face_ids, renders["face_ids"][view])


@pytest.mark.parametrize("view", range(3))
def test_float_normal_and_position_maps_match(renderer, renders, view):
    same_face = renderer.render_face_ids(*SELECTED[view]).numpy() == renders["face_ids"][view]
    normal = renderer.render_normal(*SELECTED[view]).numpy()
    position = renderer.render_position(*SELECTED[view]).numpy()
    np.testing.assert_allclose(normal[same_face], renders["normal_float"][view][same_face], rtol=0, atol=1e-5)
    np.testing.assert_allclose(position[same_face], renders["position_float"][view][same_face], rtol=0, atol=1e-5)


@pytest.mark.parametrize("view", range(len(SELECTED)))
def test_uint8_condition_maps_and_their_view_size_resizes_are_exact(renderer, renders, view):
    normal = to_uint8_image(renderer.render_normal(*SELECTED[view]))
    position = to_uint8_image(renderer.render_position(*SELECTED[view]))
    np.testing.assert_array_equal(normal, renders["normal_uint8"][view])
    np.testing.assert_array_equal(position, renders["position_uint8"][view])
    resized_normal = np.asarray(Image.fromarray(normal).resize((VIEW_SIZE, VIEW_SIZE)))
    resized_position = np.asarray(Image.fromarray(position).resize((VIEW_SIZE, VIEW_SIZE)))
    np.testing.assert_array_equal(resized_normal, renders["normal_uint8_viewsize"][view])
    np.testing.assert_array_equal(resized_position, renders["position_uint8_viewsize"][view])


def test_normal_map_of_a_front_facing_face_is_magenta():
    # A quad facing +Z (the front camera): RGB = ((1 + nx) / 2, (1 - nz) / 2, (1 + ny) / 2) = (0.5, 0, 0.5).
    vertices = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], dtype=np.float32)
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    normal = MeshRenderer(vertices, faces, render_size=32).render_normal(0, 0).numpy()
    np.testing.assert_allclose(normal[16, 16], [0.5, 0.0, 0.5], atol=1e-6)


def test_front_view_is_upright_and_not_mirrored():
    # Big quad plus a small marker triangle in the top-right (+X, +Y) corner, slightly in front.
    vertices = np.array(
        [[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0], [0.6, 0.6, 0.1], [0.9, 0.6, 0.1], [0.9, 0.9, 0.1]],
        dtype=np.float32,
    )
    faces = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6]])
    face_ids = MeshRenderer(vertices, faces, render_size=64).render_face_ids(0, 0).numpy()
    rows, cols = np.nonzero(face_ids == 3)
    assert rows.size > 0
    assert rows.max() < 32 and cols.min() > 32  # top rows, right columns


# --------------------------------------------------------------------------------------------------
# Rasterizer
# --------------------------------------------------------------------------------------------------


def _clip(points_ndc, depth=0.0):
    points = np.asarray(points_ndc, dtype=np.float32)
    return torch.from_numpy(np.concatenate([points, np.full((len(points), 1), depth, np.float32), np.ones((len(points), 1), np.float32)], 1))


def test_screen_mapping_puts_ndc_minus_one_and_plus_one_on_pixel_centres():
    screen = screen_coordinates(_clip([[-1, -1], [1, 1]]), 8, 16).numpy()
    np.testing.assert_allclose(screen[:, :2], [[0.5, 0.5], [15.5, 7.5]])


def test_pixels_on_a_shared_edge_are_claimed_by_both_triangles():
    # Square split along its diagonal; pixel centres on the diagonal belong to both triangles.
    clip = _clip([[-1, -1], [1, -1], [1, 1], [-1, 1]])
    lower = rasterize(clip, torch.tensor([[0, 1, 2]]), 9).mask.numpy()
    upper = rasterize(clip, torch.tensor([[0, 2, 3]]), 9).mask.numpy()
    diagonal = np.eye(9, dtype=bool)
    assert lower[diagonal].all() and upper[diagonal].all()
    assert (lower | upper).all()


def test_depth_ties_resolve_to_the_lower_face_index_and_nearer_faces_win():
    triangle = [[-1, -1], [1, -1], [0, 1]]
    same_depth = torch.cat([_clip(triangle, 0.2), _clip(triangle, 0.2)])
    ids = rasterize(same_depth, torch.tensor([[3, 4, 5], [0, 1, 2]]), 16).face_ids
    assert set(ids.unique().tolist()) == {0, 1}
    nearer_second = torch.cat([_clip(triangle, 0.5), _clip(triangle, -0.5)])
    ids = rasterize(nearer_second, torch.tensor([[0, 1, 2], [3, 4, 5]]), 16).face_ids
    assert set(ids.unique().tolist()) == {0, 2}


def test_zero_area_triangles_are_skipped():
    clip = _clip([[-1, -1], [0, 0], [1, 1]])
    assert not rasterize(clip, torch.tensor([[0, 1, 2]]), 16).mask.any()


def test_barycentrics_interpolate_linear_attributes_exactly_at_pixel_centres():
    clip = _clip([[-1, -1], [1, -1], [-1, 1]])
    raster = rasterize(clip, torch.tensor([[0, 1, 2]]), 32)
    screen = screen_coordinates(clip, 32, 32)[:, :2]
    at_pixels = interpolate(screen, raster, torch.tensor([[0, 1, 2]]))
    rows, cols = torch.nonzero(raster.mask, as_tuple=True)
    np.testing.assert_allclose(at_pixels[rows, cols, 0].numpy(), cols.numpy() + 0.5, atol=1e-4)
    np.testing.assert_allclose(at_pixels[rows, cols, 1].numpy(), rows.numpy() + 0.5, atol=1e-4)
    np.testing.assert_allclose(raster.barycentrics[rows, cols].sum(-1).numpy(), 1.0, atol=1e-6)


def test_results_do_not_depend_on_the_chunk_size(renderer):
    _camera, clip = renderer.camera_and_clip_positions(20.0, 30.0)
    reference = rasterize(clip, renderer.pos_idx, 96)
    chunked = rasterize(clip, renderer.pos_idx, 96, pixels_per_chunk=4096)
    assert torch.equal(reference.face_ids, chunked.face_ids)
    assert torch.equal(reference.barycentrics, chunked.barycentrics)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_gives_the_same_face_ids_and_barycentrics_as_cpu(renderer):
    _camera, clip = renderer.camera_and_clip_positions(0.0, 0.0)
    on_cpu = rasterize(clip, renderer.pos_idx, RENDER_SIZE)
    on_gpu = rasterize(clip.cuda(), renderer.pos_idx.cuda(), RENDER_SIZE)
    assert torch.equal(on_cpu.face_ids, on_gpu.face_ids.cpu())
    assert torch.equal(on_cpu.barycentrics, on_gpu.barycentrics.cpu())


def test_renderer_rejects_malformed_meshes():
    with pytest.raises(ValueError, match="faces index vertices"):
        MeshRenderer(np.zeros((3, 3)), np.array([[0, 1, 5]]))
    with pytest.raises(ValueError, match="no extent"):
        MeshRenderer(np.zeros((3, 3)), np.array([[0, 1, 2]]))
    with pytest.raises(ValueError, match="no UVs"):
        _ = MeshRenderer(np.eye(3), np.array([[0, 1, 2]])).texels
