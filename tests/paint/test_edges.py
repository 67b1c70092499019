"""Torch Canny and box morphology (``hy3dpaint.edges``) against OpenCV, bit for bit."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from hy3dpaint.edges import canny, dilate_box, erode_box


def _images() -> dict[str, np.ndarray]:
    generator = np.random.default_rng(7)
    rows, cols = np.mgrid[0:181, 0:203]
    steps = ((rows // 23 + cols // 31) % 5 * 50).astype(np.uint8)
    blobs = cv2.GaussianBlur(generator.integers(0, 256, (181, 203)).astype(np.uint8), (0, 0), 3)
    disc = np.where((rows - 90) ** 2 + (cols - 100) ** 2 < 70**2, 40 + rows // 2, 0).astype(np.uint8)
    return {
        "noise": generator.integers(0, 256, (97, 131)).astype(np.uint8),
        "steps": steps,
        "blurred noise": cv2.normalize(blobs, None, 0, 255, cv2.NORM_MINMAX),
        "depth-like disc": disc,
        "flat": np.full((40, 50), 9, np.uint8),
    }


@pytest.mark.parametrize("name", sorted(_images()))
@pytest.mark.parametrize("thresholds", [(30, 80), (80, 30), (10.7, 200.2)])
def test_canny_equals_opencv(name, thresholds):
    image = _images()[name]
    expected = cv2.Canny(image, *thresholds) > 0
    np.testing.assert_array_equal(canny(torch.from_numpy(image), *thresholds).numpy(), expected)


def _rendered_depths(views):
    """(raster, camera depth [256, 256]) of the vector mesh from each (elevation, azimuth)."""
    from hy3dpaint.render import MeshRenderer
    from hy3dpaint.render.rasterizer import interpolate, rasterize

    mesh = np.load("tests/data/paint/mesh/uv_wrapped.npz")
    renderer = MeshRenderer(mesh["vertices"], mesh["faces"], mesh["uv"], texture_size=128, render_size=256)
    for elevation, azimuth in views:
        camera, clip = renderer.camera_and_clip_positions(elevation, azimuth)
        raster = rasterize(clip, renderer.pos_idx, (256, 256))
        yield raster, interpolate(camera[:, 2:3].contiguous(), raster, renderer.pos_idx)[..., 0]


def test_canny_on_a_rendered_depth_image_equals_opencv():
    for raster, depth in _rendered_depths(((0, 0), (20, 90), (-20, 210))):
        depth = depth.numpy()
        visible = raster.face_ids.numpy() > 0
        shown = depth[visible]
        image = (((depth - shown.min()) / (shown.max() - shown.min()) * visible) * 255).astype(np.uint8)
        np.testing.assert_array_equal(canny(torch.from_numpy(image), 30, 80).numpy(), cv2.Canny(image, 30, 80) > 0)


@pytest.mark.parametrize("radius", [0, 1, 4])
def test_box_dilation_and_erosion_equal_opencv(radius):
    generator = np.random.default_rng(radius)
    mask = generator.random((60, 70)) > 0.8
    mask[:, :5] = True  # touches the border: erosion treats the outside as set
    box = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    dilated = cv2.dilate(mask.astype(np.uint8), box) > 0
    eroded = cv2.erode(mask.astype(np.uint8), box, borderType=cv2.BORDER_CONSTANT, borderValue=1) > 0
    np.testing.assert_array_equal(dilate_box(torch.from_numpy(mask), radius).numpy(), dilated)
    np.testing.assert_array_equal(erode_box(torch.from_numpy(mask), radius).numpy(), eroded)


def test_reliable_pixels_in_torch_equal_the_opencv_path():
    """The device path of the bake's reliability mask (used off the CPU) gives the CPU path's bits."""
    from hy3dpaint.bake import BOUNDARY_KERNEL, _reliable_pixels_torch, reliable_pixels

    for raster, depth in _rendered_depths(((0, 0), (90, 0), (-20, 330))):
        for kernel in (0, BOUNDARY_KERNEL):
            np.testing.assert_array_equal(_reliable_pixels_torch(raster.face_ids, depth, kernel).numpy(),
                                          reliable_pixels(raster.face_ids, depth, kernel).numpy())
