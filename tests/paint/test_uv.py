"""UV unwrapping: xatlas parity with the reference, and the charts method's promises."""

from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from skimage.measure import marching_cubes

from hy3dpaint.render import rasterize
from hy3dpaint.uv import mesh_uv_wrap, uv_utilisation

DATA = Path(__file__).resolve().parent.parent / "data" / "paint"


def _marching_cubes_mesh(resolution: int = 44) -> trimesh.Trimesh:
    """A bumpy body with a handle (genus 1) and a knob: the kind of surface the shape stage emits."""
    axis = np.linspace(-1, 1, resolution + 1, dtype=np.float32)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    body = 0.55 - np.sqrt((x / 0.8) ** 2 + (y / 0.65) ** 2 + (z / 0.55) ** 2) + 0.04 * np.sin(11 * x) * np.sin(9 * y)
    handle = 0.09 - np.sqrt((np.sqrt(x**2 + (y - 0.05) ** 2) - 0.62) ** 2 + z**2)
    knob = 0.28 - np.sqrt((x - 0.55) ** 2 + (y - 0.55) ** 2 + (z - 0.1) ** 2)
    vertices, faces, _, _ = marching_cubes(np.maximum.reduce([body, handle, knob]), 0.0)
    return trimesh.Trimesh(vertices / resolution * 2 - 1, faces[:, ::-1])


def _helicoid_strip(turns: float = 1.5, steps: int = 120) -> trimesh.Trimesh:
    """A flat spiral ramp: every face looks up, and its top-down projection covers itself 1.5 times."""
    angle = np.linspace(0, 2 * np.pi * turns, steps)
    rows = []
    for radius in (0.5, 1.0):
        rows.append(np.stack([radius * np.cos(angle), 0.05 * angle, radius * np.sin(angle)], axis=1))
    vertices = np.concatenate(rows)
    faces = []
    for i in range(steps - 1):
        a, b, c, d = i, i + 1, steps + i, steps + i + 1
        faces += [[a, c, b], [b, c, d]]
    return trimesh.Trimesh(vertices, np.array(faces), process=False)


def texels_claimed_twice(uv: np.ndarray, faces: np.ndarray, size: int) -> int:
    """Texels whose centre lies strictly inside two or more UV triangles (shared edges do not count)."""
    corners = uv[faces].astype(np.float64) * size  # texel (row r, col c) has centre (c + 0.5, r + 0.5)
    low = np.floor(corners.min(axis=1) - 0.5).astype(np.int64).clip(0, size - 1)
    high = np.ceil(corners.max(axis=1) - 0.5).astype(np.int64).clip(0, size - 1)
    width, height = high[:, 0] - low[:, 0] + 1, high[:, 1] - low[:, 1] + 1
    count = width * height
    triangle = np.repeat(np.arange(len(faces)), count)
    local = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    col = low[triangle, 0] + local % width[triangle]
    row = low[triangle, 1] + local // width[triangle]
    px, py = col + 0.5, row + 0.5
    a, b, c = corners[triangle, 0], corners[triangle, 1], corners[triangle, 2]
    sign = np.sign((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))

    def edge(p, q):
        return sign * ((q[:, 0] - p[:, 0]) * (py - p[:, 1]) - (q[:, 1] - p[:, 1]) * (px - p[:, 0]))

    inside = (edge(a, b) > 1e-9) & (edge(b, c) > 1e-9) & (edge(c, a) > 1e-9) & (sign != 0)
    claims = np.bincount(row[inside] * size + col[inside], minlength=size * size)
    return int((claims > 1).sum())


def chart_labels(faces: np.ndarray) -> np.ndarray:
    """Chart of every face: faces connected through shared (split) UV vertices."""
    count = faces.max() + 1
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]]])
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(count, count))
    return connected_components(graph, directed=False)[1][faces[:, 0]]


@pytest.fixture(scope="module")
def mc_mesh():
    return _marching_cubes_mesh()


@pytest.fixture(scope="module")
def unwrapped(mc_mesh):
    return mesh_uv_wrap(mc_mesh, texture_size=1024)


def test_xatlas_method_reproduces_the_reference_unwrap():
    reference = np.load(DATA / "mesh" / "uv_wrapped.npz")
    loaded = trimesh.load(DATA / "mesh" / "mesh.glb")
    np.testing.assert_allclose(loaded.to_geometry().vertices, reference["loaded_vertices"], atol=1e-6)
    result = mesh_uv_wrap(loaded, method="xatlas")
    np.testing.assert_array_equal(result.faces, reference["faces"])
    np.testing.assert_allclose(result.vertices, reference["vertices"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(result.visual.uv, reference["uv"], rtol=0, atol=1e-6)


def test_charts_uvs_are_float32_inside_the_unit_square(unwrapped):
    uv = unwrapped.visual.uv
    assert uv.dtype == np.float32 and uv.shape == (len(unwrapped.vertices), 2)
    assert uv.min() >= 0.0 and uv.max() <= 1.0


def test_charts_split_vertices_only_along_seams(mc_mesh, unwrapped):
    # Same triangles, in the same order, with the same corner positions.
    np.testing.assert_array_equal(unwrapped.vertices[unwrapped.faces], np.asarray(mc_mesh.vertices)[mc_mesh.faces])
    assert len(mc_mesh.vertices) < len(unwrapped.vertices) < 1.5 * len(mc_mesh.vertices)


def test_charts_do_not_overlap(unwrapped):
    assert texels_claimed_twice(unwrapped.visual.uv, unwrapped.faces, 1024) == 0


def test_a_surface_whose_projection_folds_is_split_until_nothing_overlaps():
    strip = _helicoid_strip()
    result = mesh_uv_wrap(strip, texture_size=512)
    assert texels_claimed_twice(result.visual.uv, result.faces, 1024) == 0
    assert len(np.unique(chart_labels(result.faces))) >= 2


def test_neighbouring_charts_keep_a_gutter(unwrapped):
    size = 1024  # the texture size the unwrap was designed for
    uv = torch.from_numpy(unwrapped.visual.uv.astype(np.float32))
    clip = torch.cat([uv * 2 - 1, torch.zeros_like(uv[:, :1]), torch.ones_like(uv[:, :1])], dim=1)
    face_ids = rasterize(clip, torch.from_numpy(unwrapped.faces), size).face_ids.numpy()
    labels = np.concatenate([[-1], chart_labels(unwrapped.faces)])[face_ids]
    window = np.ones((5, 5), bool)  # texels within 2 of each other
    empty = int(labels.max()) + 1
    highest = ndimage.maximum_filter(labels, footprint=window, mode="constant", cval=-1)
    lowest = ndimage.minimum_filter(np.where(labels < 0, empty, labels), footprint=window, mode="constant", cval=empty)
    covered = labels >= 0
    assert covered.sum() > 0.3 * size * size
    assert np.all(highest[covered] == lowest[covered])


def test_charts_fill_a_good_part_of_the_atlas(unwrapped):
    assert uv_utilisation(unwrapped.visual.uv, unwrapped.faces) >= 0.5


def test_charts_unwrap_is_deterministic(mc_mesh, unwrapped):
    again = mesh_uv_wrap(mc_mesh, texture_size=1024)
    np.testing.assert_array_equal(again.faces, unwrapped.faces)
    np.testing.assert_array_equal(again.visual.uv, unwrapped.visual.uv)


def test_scenes_are_flattened_and_simple_meshes_unwrap():
    scene = trimesh.Scene([trimesh.creation.box(), trimesh.creation.icosphere(2).apply_translation([3, 0, 0])])
    result = mesh_uv_wrap(scene, texture_size=256)
    assert len(result.faces) == 12 + 320
    assert texels_claimed_twice(result.visual.uv, result.faces, 512) == 0


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="allowed: charts, xatlas"):
        mesh_uv_wrap(trimesh.creation.box(), method="smart")
    with pytest.raises(ValueError, match="empty"):
        mesh_uv_wrap(trimesh.Trimesh())
