"""The neural engines served through a real tritonserver, with tiny checkpoints in the official layout.

Promises: with HY3D_WEIGHTS_DIR set, shape_dit runs Hunyuan3D-2.1's pipeline and reproduces the reference
mesh of the parity vectors (after the same post-processing); paint_pbr runs the Hunyuan3D-Paint pipeline
(paint sizes overridden by settings) and returns a textured, valid GLB; ENGINE names both; an incomplete
weights folder fails the model load with a message naming the missing file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from hy3d_serving.engines import PAINT_NEURAL, SHAPE_NEURAL
from hy3d_serving.weights import PAINT_FILES, SHAPE_FILES, SHAPE_SUBFOLDER, check_weights
from hy3d_tooling.server_process import ServerStartError

from .ensemble_client import generate
from .glb_checks import base_color_textures, glb_arrays, validation_report

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[1] / "data"
SHAPE_MODEL = DATA / "shape" / "model" / SHAPE_SUBFOLDER
SHAPE_IMAGE = DATA / "shape" / "test_image.png"
REFERENCE_MESH = DATA / "shape" / "e_pipeline_mesh.npz"
#: The run of the shape parity vectors (tests/data/shape/README.md).
REFERENCE_RUN = {"num_inference_steps": 6, "guidance_scale": 5.0, "seed": 42, "octree_resolution": 48,
                 "face_count": 40000}
#: Paint sizes the tiny paint model is made for (tests/data/paint/README.md), fewer views for speed.
TINY_PAINT_SETTINGS = {"HY3D_PAINT_VIEW_SIZE": "64", "HY3D_PAINT_RENDER_SIZE": "128",
                       "HY3D_PAINT_TEXTURE_SIZE": "128", "HY3D_PAINT_MAX_NUM_VIEW": "6"}
#: Recommended vertex tolerance of the shape vectors, world units.
VERTEX_TOLERANCE = 1e-3


def shape_weights(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / SHAPE_SUBFOLDER).symlink_to(SHAPE_MODEL, target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory) -> Path:
    from paint.tiny_weights import build_tiny_paint_weights

    root = shape_weights(tmp_path_factory.mktemp("weights"))
    build_tiny_paint_weights(root)
    return root


@pytest.fixture(scope="module")
def neural_server(weights_dir, tmp_path_factory, serve_model_repository):
    server = serve_model_repository(tmp_path_factory.mktemp("neural") / "server.log",
                   {"HY3D_WEIGHTS_DIR": str(weights_dir), **TINY_PAINT_SETTINGS})
    try:
        yield server
    finally:
        server.stop()


def shape_image() -> np.ndarray:
    return np.asarray(Image.open(SHAPE_IMAGE).convert("RGBA"))


def test_tiny_weights_folder_has_every_file_the_stages_check(weights_dir):
    check_weights(weights_dir, SHAPE_FILES, "shape_dit")
    check_weights(weights_dir, PAINT_FILES, "paint_pbr")


def test_served_shape_reproduces_the_reference_mesh(neural_server):
    from hy3dshape import postprocess_mesh

    asset = generate(neural_server.http_url, "http", shape_image(), {**REFERENCE_RUN, "texture": False})
    assert asset.engine == f"shape={SHAPE_NEURAL};paint=none"
    reference = np.load(REFERENCE_MESH)
    expected = postprocess_mesh(trimesh.Trimesh(reference["vertices"], reference["faces"]),
                                REFERENCE_RUN["face_count"])
    vertices, faces = glb_arrays(asset.glb)
    assert np.array_equal(faces, np.asarray(expected.faces))
    assert np.abs(vertices - np.asarray(expected.vertices, np.float32)).max() < VERTEX_TOLERANCE


def test_served_paint_returns_a_textured_valid_glb_naming_both_engines(neural_server, tmp_path):
    asset = generate(neural_server.grpc_url, "grpc", shape_image(), {**REFERENCE_RUN, "face_count": 2000})
    assert asset.engine == f"shape={SHAPE_NEURAL};paint={PAINT_NEURAL}"
    assert asset.textured is True and asset.seed == REFERENCE_RUN["seed"]
    assert base_color_textures(asset.glb)
    report = validation_report(asset.glb, tmp_path)
    assert report["numErrors"] == 0, report["messages"]


def test_neural_logs_name_the_engines_and_the_paint_sizes(neural_server):
    log = neural_server.log_path.read_text()
    assert f"shape engine {SHAPE_NEURAL} loaded (device=cpu, dtype=float32)" in log
    assert f"paint engine {PAINT_NEURAL} loaded" in log and "'paint_view_size': 64" in log


def test_incomplete_weights_folder_fails_the_load_naming_the_missing_file(tmp_path, serve_model_repository):
    weights = shape_weights(tmp_path / "weights")  # no texture weights at all
    log_path = tmp_path / "server.log"
    with pytest.raises(ServerStartError):
        serve_model_repository(log_path, {"HY3D_WEIGHTS_DIR": str(weights)})
    log = log_path.read_text()
    assert ("paint_pbr: the weights folder is incomplete: missing "
            f"{weights}/hunyuan3d-paintpbr-v2-1/model_index.json") in log
    assert "failed to load 'paint_pbr'" in log
