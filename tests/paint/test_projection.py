"""The built-in texture engine ``builtin-projection``."""

import io
import logging

import numpy as np
import pytest
import trimesh
from PIL import Image

from hy3dpaint import ProjectionTexturePipeline, export_glb
from hy3dpaint.projection import ENGINE_NAME, ROUGHNESS

TEXTURE_SIZE = 256


def _two_colour_image(size: int = 128) -> Image.Image:
    """An elliptic object: red on the image's left half, blue on its right half, transparent around."""
    rows, cols = np.mgrid[0:size, 0:size]
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., 0] = np.where(cols < size // 2, 230, 20)
    rgba[..., 2] = np.where(cols < size // 2, 20, 230)
    rgba[..., 1] = 40
    rgba[..., 3] = np.where(((cols - size / 2) / (0.4 * size)) ** 2 + ((rows - size / 2) / (0.45 * size)) ** 2 < 1, 255, 0)
    return Image.fromarray(rgba, "RGBA")


def _ellipsoid(scale=(0.8, 0.9, 0.6), offset=(0.0, 0.0, 0.0)) -> trimesh.Trimesh:
    sphere = trimesh.creation.icosphere(subdivisions=3)
    sphere.apply_scale(scale)
    sphere.apply_translation(offset)
    return sphere


@pytest.fixture(scope="module")
def pipeline():
    return ProjectionTexturePipeline(render_size=256)


@pytest.fixture(scope="module")
def painted(pipeline):
    return pipeline(_ellipsoid(), image=_two_colour_image(), seed=1234, texture_size=TEXTURE_SIZE)


def _front_colours(mesh: trimesh.Trimesh) -> tuple[np.ndarray, np.ndarray]:
    """Texture colours at the vertices that face the front camera, split into left (x < 0) and right."""
    texture = np.asarray(mesh.visual.material.baseColorTexture).astype(float)
    uv = np.asarray(mesh.visual.uv)
    size = texture.shape[0]
    colours = texture[np.rint((1 - uv[:, 1]) * (size - 1)).astype(int), np.rint(uv[:, 0] * (size - 1)).astype(int)]
    centre = mesh.bounds.mean(axis=0)
    facing = mesh.vertex_normals[:, 2] > 0.8
    x = mesh.vertices[:, 0] - centre[0]
    extent = np.ptp(mesh.vertices[:, 0])
    return colours[facing & (x < -0.1 * extent)], colours[facing & (x > 0.1 * extent)]


def test_result_is_a_textured_mesh_with_pbr_textures(painted):
    assert isinstance(painted, trimesh.Trimesh)
    uv = painted.visual.uv
    assert uv.dtype == np.float32 and uv.min() >= 0 and uv.max() <= 1
    material = painted.visual.material
    assert isinstance(material, trimesh.visual.material.PBRMaterial)
    assert material.baseColorTexture.size == (TEXTURE_SIZE, TEXTURE_SIZE)
    packed = np.asarray(material.metallicRoughnessTexture)
    assert (packed[..., 0] == 255).all() and (packed[..., 2] == 0).all()
    assert (packed[..., 1] == round(ROUGHNESS * 255)).all()


def test_front_surface_takes_the_image_colours_without_mirroring(painted):
    left, right = _front_colours(painted)
    assert len(left) > 20 and len(right) > 20
    assert np.median(left[:, 0]) > 180 and np.median(left[:, 2]) < 60
    assert np.median(right[:, 2]) > 180 and np.median(right[:, 0]) < 60


def test_unseen_surface_is_filled(painted):
    texture = np.asarray(painted.visual.material.baseColorTexture)
    back = painted.vertex_normals[:, 2] < -0.8
    uv = np.asarray(painted.visual.uv)[back]
    size = texture.shape[0]
    colours = texture[np.rint((1 - uv[:, 1]) * (size - 1)).astype(int), np.rint(uv[:, 0] * (size - 1)).astype(int)]
    assert (colours.sum(axis=1) > 60).all()  # propagated colours, not the black of an empty atlas


def test_alignment_does_not_depend_on_the_mesh_placement(pipeline):
    moved = pipeline(_ellipsoid(scale=(8, 9, 6), offset=(5, -3, 2)), image=_two_colour_image(), texture_size=TEXTURE_SIZE)
    left, right = _front_colours(moved)
    assert np.median(left[:, 0]) > 180 and np.median(right[:, 2]) > 180


def test_engine_is_deterministic_and_ignores_the_seed(pipeline, painted, caplog):
    with caplog.at_level(logging.INFO, logger="hy3dpaint.projection"):
        again = pipeline(_ellipsoid(), image=_two_colour_image(), seed=99, texture_size=TEXTURE_SIZE)
    assert export_glb(again) == export_glb(painted)
    assert ENGINE_NAME == "builtin-projection"
    assert any(ENGINE_NAME in record.getMessage() for record in caplog.records)


def test_glb_output(pipeline):
    data = pipeline(_ellipsoid(), image=_two_colour_image(), texture_size=64, output_type="glb")
    loaded = trimesh.load(io.BytesIO(data), file_type="glb").to_geometry()
    assert len(loaded.faces) == len(_ellipsoid().faces)


def test_progress_reports_uv_render_and_bake_each_ending_complete(pipeline):
    events: list[tuple[str, int, int]] = []
    pipeline(_ellipsoid(), image=_two_colour_image(), texture_size=64, callback=lambda *event: events.append(event))
    assert list(dict.fromkeys(phase for phase, _done, _total in events)) == ["paint:uv", "paint:render", "paint:bake"]
    for phase in ("paint:uv", "paint:render", "paint:bake"):
        done, total = [(d, t) for name, d, t in events if name == phase][-1]
        assert done == total


def test_bad_inputs_are_rejected(pipeline):
    transparent = Image.new("RGBA", (32, 32), (255, 0, 0, 0))
    with pytest.raises(ValueError, match="no pixel with alpha"):
        pipeline(_ellipsoid(), image=transparent, texture_size=64)
    with pytest.raises(ValueError, match=r"texture_size must be in \[64, 4096\]"):
        pipeline(_ellipsoid(), image=_two_colour_image(), texture_size=8)
    with pytest.raises(ValueError, match="PIL image"):
        pipeline(_ellipsoid(), image=np.zeros((8, 8, 4), np.uint8))
    with pytest.raises(ValueError, match="output_type"):
        pipeline(_ellipsoid(), image=_two_colour_image(), output_type="obj")
    with pytest.raises(ValueError, match="texture_format"):
        pipeline(_ellipsoid(), image=_two_colour_image(), output_type="glb", texture_format="gif")
