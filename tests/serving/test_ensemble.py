"""hy3d_ensemble through a real tritonserver (built-in engines), over HTTP and gRPC.

Promises: the GLB parses (trimesh, pygltflib) and passes the Khronos validator with zero errors; it
respects FACE_COUNT; it carries a baseColor texture exactly when TEXTURE is true; ENGINE, SEED_USED and
TEXTURED are right; the same inputs and seed give byte-identical GLBs, over either protocol, and the same
bytes as the engines produce in-process.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hy3d_client import contract
from PIL import Image, ImageDraw

from .ensemble_client import generate
from .glb_checks import base_color_textures, face_count, load_mesh, validation_report

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mug.png"
BUILTIN_ENGINES = "shape=builtin-silhouette;paint=builtin-projection"
#: Small settings that keep each request to seconds on a 2-core machine.
SMALL = {"octree_resolution": 96, "face_count": 3000, "seed": 77}
#: How far under FACE_COUNT the decimated mesh may land.
FACE_COUNT_TOLERANCE = 0.05


def example_rgba() -> np.ndarray:
    return np.asarray(Image.open(EXAMPLE).convert("RGBA"))


def plain_background_rgb() -> np.ndarray:
    """A dark-blue toy figure silhouette on white, no alpha: exercises background removal."""
    image = Image.new("RGB", (160, 200), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.ellipse((55, 20, 105, 70), fill=(30, 40, 120))
    draw.rounded_rectangle((45, 70, 115, 150), radius=12, fill=(30, 40, 120))
    draw.rectangle((50, 150, 75, 190), fill=(30, 40, 120))
    draw.rectangle((85, 150, 110, 190), fill=(30, 40, 120))
    return np.asarray(image)


@pytest.fixture(scope="module")
def textured_http(triton_server):
    return generate(triton_server.http_url, "http", example_rgba(), SMALL)


@pytest.fixture(scope="module")
def untextured_grpc(triton_server):
    return generate(triton_server.grpc_url, "grpc", example_rgba(), {**SMALL, "texture": False})


def test_textured_glb_parses_validates_and_carries_a_base_color_texture(textured_http, tmp_path):
    mesh = load_mesh(textured_http.glb)
    assert len(mesh.faces) > 0 and np.isfinite(mesh.vertices).all()
    assert base_color_textures(textured_http.glb)
    report = validation_report(textured_http.glb, tmp_path)
    assert report["numErrors"] == 0, report["messages"]


def test_textured_outputs_name_the_engines_seed_and_texture(textured_http):
    assert textured_http.engine == BUILTIN_ENGINES
    assert textured_http.seed == SMALL["seed"]
    assert textured_http.textured is True


def test_untextured_glb_over_grpc_has_no_texture_and_validates(untextured_grpc, tmp_path):
    assert untextured_grpc.textured is False
    assert untextured_grpc.engine == "shape=builtin-silhouette;paint=none"
    assert base_color_textures(untextured_grpc.glb) == []
    assert len(load_mesh(untextured_grpc.glb).faces) > 0
    report = validation_report(untextured_grpc.glb, tmp_path)
    assert report["numErrors"] == 0, report["messages"]


def test_glb_respects_face_count(textured_http, untextured_grpc):
    limit = SMALL["face_count"]
    for asset in (textured_http, untextured_grpc):
        faces = face_count(asset.glb)
        assert (1 - FACE_COUNT_TOLERANCE) * limit <= faces <= limit


def test_same_inputs_and_seed_give_byte_identical_glbs_over_http_and_grpc(triton_server, textured_http):
    again_grpc = generate(triton_server.grpc_url, "grpc", example_rgba(), SMALL)
    assert again_grpc.glb == textured_http.glb


def test_rgb_image_on_a_plain_background_is_cut_out_and_lifted(triton_server, tmp_path):
    asset = generate(triton_server.http_url, "http", plain_background_rgb(), {**SMALL, "texture": False})
    mesh = load_mesh(asset.glb)
    extent = mesh.bounds[1] - mesh.bounds[0]
    assert extent[1] > extent[0]  # the figure is taller than wide: the white background was removed
    assert validation_report(asset.glb, tmp_path)["numErrors"] == 0


def test_glb_from_triton_equals_the_in_process_glb_byte_for_byte(textured_http):
    from hy3d_serving.engines import load_background_remover, load_paint_engine, load_shape_engine
    from hy3d_serving.stage_config import StageConfig
    from hy3d_serving.stages import run_in_process

    config = StageConfig.resolve({}, {})
    local = run_in_process(example_rgba(), SMALL, remover=load_background_remover(),
                           shape_engine=load_shape_engine(config), paint_engine=load_paint_engine(config))
    assert local.glb == textured_http.glb
    assert (local.engine, local.seed_used, local.textured) == (
        textured_http.engine, textured_http.seed, textured_http.textured)


@pytest.mark.slow
def test_default_parameters_give_the_contract_defaults(triton_server, tmp_path):
    asset = generate(triton_server.http_url, "http", example_rgba(), {})
    assert asset.seed == contract.DEFAULTS["seed"]
    assert asset.textured is True and asset.engine == BUILTIN_ENGINES
    assert face_count(asset.glb) <= contract.DEFAULTS["face_count"]
    assert base_color_textures(asset.glb)
    assert validation_report(asset.glb, tmp_path)["numErrors"] == 0
