"""Promises of the built-in shape engine ``builtin-silhouette`` (``hy3dshape.silhouette``)."""

from __future__ import annotations

import logging
import tracemalloc

import cv2
import numpy as np
import pytest
import trimesh
from hy3d_client.contract import PARAMETERS_BY_KEY
from PIL import Image

import hy3dshape
from hy3dshape.preprocessors import recenter
from hy3dshape.silhouette import (
    HALF_THICKNESS_RATIO,
    MAX_OCTREE_RESOLUTION,
    MIN_OCTREE_RESOLUTION,
    SilhouetteLiftingPipeline,
)

RESOLUTION = 96
#: One float32 grid of 513^3 samples, what the engine must stay well under at R = 512.
FULL_GRID_BYTES_AT_512 = 513**3 * 4


def rgba_image(width: int = 360, height: int = 400) -> Image.Image:
    """A disk in the upper left on an L-shaped stick reaching the lower right: one connected object
    whose mass lies up and to the left of its bounding box's centre."""
    pixels = np.zeros((height, width, 4), dtype=np.uint8)
    cv2.circle(pixels, (110, 110), 90, (200, 60, 40, 255), thickness=-1)
    cv2.rectangle(pixels, (100, 180), (130, 380), (40, 160, 60, 255), thickness=-1)
    cv2.rectangle(pixels, (100, 350), (340, 380), (40, 160, 60, 255), thickness=-1)
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def image() -> Image.Image:
    return rgba_image()


@pytest.fixture(scope="module")
def mesh(image) -> trimesh.Trimesh:
    (result,) = SilhouetteLiftingPipeline()(image=image, octree_resolution=RESOLUTION)
    return result


def front_silhouette(mesh: trimesh.Trimesh, side: int, resolution: int, box_v: float = 1.01) -> np.ndarray:
    """Rasterise the mesh seen from +Z onto the recentred canvas (side x side), undoing the world map."""
    index = (np.asarray(mesh.vertices)[:, :2] + box_v) * (resolution + 1) / (2 * box_v)  # grid index
    columns = index[:, 0] / resolution * side - 0.5  # OpenCV pixel centres sit on integers
    rows = side - index[:, 1] / resolution * side - 0.5
    points = np.round(np.stack([columns, rows], axis=1) * 16).astype(np.int32)  # 4 fractional bits
    canvas = np.zeros((side, side), dtype=np.uint8)
    for triangle in points[np.asarray(mesh.faces)]:
        cv2.fillConvexPoly(canvas, triangle, 255, lineType=cv2.LINE_8, shift=4)
    return canvas > 0


def test_engine_is_exported_at_the_package_top_level():
    assert hy3dshape.SilhouetteLiftingPipeline is SilhouetteLiftingPipeline
    assert SilhouetteLiftingPipeline.engine_name == "builtin-silhouette"


def test_resolution_limits_are_the_request_contracts():
    octree_resolution = PARAMETERS_BY_KEY["octree_resolution"]
    assert (MIN_OCTREE_RESOLUTION, MAX_OCTREE_RESOLUTION) == (octree_resolution.minimum, octree_resolution.maximum)


def test_result_is_one_watertight_mesh_with_outward_normals(mesh):
    assert isinstance(mesh, trimesh.Trimesh)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.volume > 0
    assert len(mesh.split(only_watertight=False)) == 1


def test_front_silhouette_matches_the_recentred_mask(image, mesh):
    _rgb, mask = recenter(np.asarray(image), 0.15)
    expected = mask[..., 0] > 127
    seen = front_silhouette(mesh, expected.shape[0], RESOLUTION)
    iou = (seen & expected).sum() / (seen | expected).sum()
    assert iou > 0.9


def test_image_right_is_plus_x_image_up_is_plus_y_and_the_shape_is_symmetric_in_z(mesh):
    centre = mesh.center_mass
    assert centre[0] < -0.05  # the disk is on the left of the image
    assert centre[1] > 0.05  # and at its top
    low, high = mesh.bounds[:, 2]
    assert abs(high + low) < 0.05 and high > 0.1  # as deep towards the camera (+Z) as away from it


def test_mesh_lies_inside_the_box(image):
    for box_v in (1.01, 0.5):
        (result,) = SilhouetteLiftingPipeline()(image=image, octree_resolution=64, box_v=box_v)
        assert np.all(np.abs(result.bounds) <= box_v)
        extent = result.bounds[1] - result.bounds[0]
        assert max(extent[0], extent[1]) > 1.6 * box_v  # the object's longer side fills ~85 % of the box


def test_a_disk_is_inflated_to_an_ellipsoid_of_the_configured_depth():
    pixels = np.zeros((200, 200, 4), dtype=np.uint8)
    cv2.circle(pixels, (100, 100), 80, (255, 255, 255, 255), thickness=-1)
    (result,) = SilhouetteLiftingPipeline()(image=Image.fromarray(pixels), octree_resolution=128)
    half_width = (result.bounds[1, 0] - result.bounds[0, 0]) / 2
    half_depth = (result.bounds[1, 2] - result.bounds[0, 2]) / 2
    assert half_depth / half_width == pytest.approx(HALF_THICKNESS_RATIO, rel=0.05)
    expected_volume = 4 / 3 * np.pi * half_width**2 * half_depth
    assert result.volume == pytest.approx(expected_volume, rel=0.05)


def test_same_image_gives_the_same_mesh(image, mesh):
    (again,) = SilhouetteLiftingPipeline()(image=image, octree_resolution=RESOLUTION)
    assert np.array_equal(again.vertices, mesh.vertices)
    assert np.array_equal(again.faces, mesh.faces)


def test_no_two_vertices_share_a_position(image):
    ((vertices, faces),) = SilhouetteLiftingPipeline()(image=image, octree_resolution=RESOLUTION, output_type="mesh")
    assert len(np.unique(vertices, axis=0)) == len(vertices)  # so trimesh's merge changes nothing


def test_output_type_mesh_gives_the_vertex_and_face_arrays(image, mesh):
    ((vertices, faces),) = SilhouetteLiftingPipeline()(image=image, octree_resolution=RESOLUTION, output_type="mesh")
    assert vertices.dtype == np.float32 and vertices.shape[1] == 3
    assert faces.dtype == np.int64 and faces.shape[1] == 3
    assert np.allclose(vertices, mesh.vertices) and np.array_equal(faces, mesh.faces)


def test_a_list_of_images_gives_one_result_per_image(image):
    mirrored = image.transpose(Image.FLIP_LEFT_RIGHT)
    results = SilhouetteLiftingPipeline()(image=[image, mirrored], octree_resolution=64)
    assert len(results) == 2
    grid_centre = -1.01 / 65  # where the extractor's R / (R + 1) map puts the middle of the grid
    left, right = (result.center_mass[0] - grid_centre for result in results)
    assert left < -0.05 and left == pytest.approx(-right, abs=0.03)


def test_neural_pipeline_keywords_are_accepted_and_ignored(image):
    (result,) = SilhouetteLiftingPipeline()(
        image=image, octree_resolution=32, num_inference_steps=5, guidance_scale=5.0, generator=None
    )
    assert result.is_watertight


def test_an_empty_mask_is_a_clear_value_error():
    empty = Image.new("RGBA", (64, 64), (255, 0, 0, 0))
    with pytest.raises(ValueError, match="alpha channel .* is empty"):
        SilhouetteLiftingPipeline()(image=empty, octree_resolution=32)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"octree_resolution": MIN_OCTREE_RESOLUTION - 1}, r"octree_resolution must be in \[16, 512\]"),
        ({"octree_resolution": MAX_OCTREE_RESOLUTION + 1}, r"octree_resolution must be in \[16, 512\]"),
        ({"octree_resolution": 64.0}, "octree_resolution must be an integer"),
        ({"box_v": 0.0}, "box_v must be a positive number"),
        ({"mc_level": float("nan")}, "mc_level must be a finite number"),
        ({"output_type": "latent"}, "allowed: trimesh, mesh"),
    ],
)
def test_invalid_arguments_are_clear_value_errors(image, arguments, message):
    with pytest.raises(ValueError, match=message):
        SilhouetteLiftingPipeline()(image=image, **arguments)


def test_an_image_that_is_not_an_image_is_a_type_error():
    with pytest.raises(TypeError, match="PIL image or a uint8"):
        SilhouetteLiftingPipeline()(image="object.png", octree_resolution=32)


def test_the_engine_name_is_logged(image, caplog):
    with caplog.at_level(logging.INFO, logger="hy3dshape.silhouette"):
        SilhouetteLiftingPipeline()(image=image, octree_resolution=32)
    assert "builtin-silhouette" in caplog.text


def test_an_mc_level_above_the_whole_field_gives_none_like_the_neural_pipeline(image, caplog):
    assert SilhouetteLiftingPipeline()(image=image, octree_resolution=32, mc_level=1e6) == [None]


def test_memory_stays_well_under_one_full_grid_at_resolution_512():
    pixels = np.zeros((512, 512, 4), dtype=np.uint8)
    cv2.circle(pixels, (256, 256), 255, (255, 255, 255, 255), thickness=-1)  # fills the canvas: worst case
    tracemalloc.start()
    try:
        ((vertices, _faces),) = SilhouetteLiftingPipeline()(
            image=Image.fromarray(pixels), octree_resolution=512, output_type="mesh"
        )
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(vertices) > 100_000
    assert peak < 0.75 * FULL_GRID_BYTES_AT_512


def test_post_processing_keeps_the_engines_mesh_closed(mesh):
    reduced = hy3dshape.postprocess_mesh(mesh, 5000)
    assert 0.95 * 5000 <= len(reduced.faces) <= 5000
    assert reduced.is_watertight and reduced.volume > 0
