"""The model.py files, driven in-process through a stand-in of triton_python_backend_utils.

Promises: one response per request, in order; a bad input becomes an INVALID_ARG error naming the stage
and the input; an engine failure becomes an INTERNAL error naming the stage; every log line of a request
carries its id; an unknown config.pbtxt parameter fails the model load.
"""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest

from hy3d_serving.logs import TritonLogHandler
from hy3d_serving.settings import SettingsError

from . import fake_pb_utils


class FakeRemover:
    method = "fake"

    def __call__(self, image):
        rgba = image.convert("RGBA")
        pixels = np.asarray(rgba).copy()
        pixels[: pixels.shape[0] // 2, :, 3] = 0  # top half is "background"
        from PIL import Image

        return Image.fromarray(pixels, "RGBA")


class BrokenShapeEngine:
    name = "broken"

    def generate(self, image, **params):
        raise RuntimeError("out of cheese")


@pytest.fixture
def pb(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake_pb_utils.as_module())
    fake_pb_utils.Logger.lines.clear()
    yield fake_pb_utils
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, TritonLogHandler)]:
        root.removeHandler(handler)


@pytest.fixture
def preprocess(pb):
    module = pb.load_model("preprocess")
    module.load_background_remover = lambda config: FakeRemover()
    model = module.TritonPythonModel()
    model.initialize(pb.model_args("preprocess"))
    return model


def image(height=32, width=48, channels=3):
    return np.full((height, width, channels), 200, np.uint8)


def test_preprocess_answers_every_request_in_order_errors_included(pb, preprocess):
    requests = [
        pb.InferenceRequest({"IMAGE": image()}),
        pb.InferenceRequest({"IMAGE": image(channels=5)}),
        pb.InferenceRequest({"IMAGE": image(channels=4)}),
    ]
    responses = preprocess.execute(requests)
    assert len(responses) == 3
    assert responses[0].error is None and responses[2].error is None
    assert responses[1].error.code() == "INVALID_ARG"
    assert responses[1].error.message().startswith("preprocess: invalid input IMAGE: expected C in {3, 4}")


def test_preprocess_removes_the_background_of_rgb_and_keeps_the_alpha_of_rgba(pb, preprocess):
    rgb, rgba = preprocess.execute([pb.InferenceRequest({"IMAGE": image()}),
                                    pb.InferenceRequest({"IMAGE": image(channels=4)})])
    assert rgb.outputs["RGBA"].shape == (32, 48, 4)
    assert not rgb.outputs["RGBA"][:16, :, 3].any() and rgb.outputs["RGBA"][16:, :, 3].all()
    assert np.array_equal(rgba.outputs["RGBA"], image(channels=4))


def test_preprocess_without_background_removal_makes_the_whole_image_the_object(pb, preprocess):
    (response,) = preprocess.execute([pb.InferenceRequest(
        {"IMAGE": image(), "REMOVE_BACKGROUND": np.array([False])})])
    assert (response.outputs["RGBA"][:, :, 3] == 255).all()


@pytest.mark.parametrize(("name", "value"), [
    ("OCTREE_RESOLUTION", np.array([100000], np.int32)),
    ("FACE_COUNT", np.array([10], np.int32)),
    ("GUIDANCE_SCALE", np.array([np.inf], np.float32)),
    ("SEED", np.array([-5], np.int64)),
])
def test_preprocess_validates_every_parameter_of_the_request(pb, preprocess, name, value):
    (response,) = preprocess.execute([pb.InferenceRequest({"IMAGE": image(), name: value})])
    assert response.error.code() == "INVALID_ARG"
    assert response.error.message().startswith(f"preprocess: invalid input {name}: ")


def test_preprocess_refuses_an_empty_object_mask(pb, preprocess):
    (response,) = preprocess.execute([pb.InferenceRequest({"IMAGE": np.zeros((16, 16, 4), np.uint8)})])
    assert response.error.message() == ("preprocess: invalid input IMAGE: the object mask is empty: "
                                        "its alpha channel is 0 everywhere")


def test_request_log_lines_carry_the_request_id(pb, preprocess):
    preprocess.execute([pb.InferenceRequest({"IMAGE": image()}, request_id="req-42")])
    lines = [message for _, message in pb.Logger.lines if message.startswith("[preprocess request=req-42] ")]
    assert any("request done in" in line for line in lines)
    assert any("image [32, 48, 3], parameters" in line for line in lines)
    assert any("background removal (fake) done" in line for line in lines)


def test_engine_failure_becomes_an_internal_error_naming_the_stage(pb, monkeypatch):
    module = pb.load_model("shape_dit")
    module.load_shape_engine = lambda config: BrokenShapeEngine()
    model = module.TritonPythonModel()
    model.initialize(pb.model_args("shape_dit"))
    rgba = image(channels=4)
    (ok_params_but_broken,) = model.execute([pb.InferenceRequest({"RGBA": rgba})])
    assert ok_params_but_broken.error.code() == "INTERNAL"
    assert ok_params_but_broken.error.message() == "shape_dit failed: RuntimeError: out of cheese"
    assert any(level == "error" and "out of cheese" in message for level, message in pb.Logger.lines)


@pytest.mark.parametrize("stage", ["shape_dit", "paint_pbr"])
def test_stages_validate_their_own_parameters_when_called_directly(pb, stage):
    module = pb.load_model(stage)
    loader = "load_shape_engine" if stage == "shape_dit" else "load_paint_engine"
    setattr(module, loader, lambda config: BrokenShapeEngine())
    model = module.TritonPythonModel()
    model.initialize(pb.model_args(stage))
    inputs = {"RGBA": image(channels=4), "SEED": np.array([-1], np.int64),
              "VERTICES": np.zeros((3, 3), np.float32), "FACES": np.array([[0, 1, 2]], np.int32)}
    (response,) = model.execute([pb.InferenceRequest(inputs)])
    assert response.error.code() == "INVALID_ARG"
    assert response.error.message().startswith(f"{stage}: invalid input SEED: -1 is out of range")


def test_unknown_config_parameter_fails_the_model_load(pb):
    module = pb.load_model("preprocess")
    module.load_background_remover = lambda config: FakeRemover()
    with pytest.raises(SettingsError, match="unknown parameter 'weights'"):
        module.TritonPythonModel().initialize(pb.model_args("preprocess", {"weights": "/w"}))

