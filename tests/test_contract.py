"""The request contract (client/hy3d_client/contract.py): defaults, ranges, image limits, error naming."""

from __future__ import annotations

import numpy as np
import pytest
from hy3d_client import contract
from hy3d_client.contract import ContractError

# The defaults of the serverless worker this service replaces (issue 2), and the texture format (issue 13:
# compact JPEG textures by default).
WORKER_DEFAULTS = {
    "remove_background": True, "texture": True, "seed": 1234, "octree_resolution": 256,
    "num_inference_steps": 5, "guidance_scale": 5.0, "face_count": 40000, "texture_format": "jpeg",
}
WORKER_DTYPES = {
    "REMOVE_BACKGROUND": "BOOL", "TEXTURE": "BOOL", "SEED": "INT64", "OCTREE_RESOLUTION": "INT32",
    "NUM_INFERENCE_STEPS": "INT32", "GUIDANCE_SCALE": "FP32", "FACE_COUNT": "INT32", "TEXTURE_FORMAT": "BYTES",
}


def test_parameters_have_the_worker_names_dtypes_and_defaults():
    assert contract.DEFAULTS == WORKER_DEFAULTS
    assert {p.name: p.triton_dtype for p in contract.PARAMETERS} == WORKER_DTYPES
    for parameter in contract.PARAMETERS:
        assert parameter.coerce(parameter.default) == parameter.default


def test_empty_request_gets_every_default():
    assert contract.validate_parameters({}) == WORKER_DEFAULTS
    assert contract.validate_parameters({}, by="name") == WORKER_DEFAULTS


@pytest.mark.parametrize(("name", "value"), [
    ("OCTREE_RESOLUTION", 100000), ("OCTREE_RESOLUTION", 15), ("FACE_COUNT", 999), ("FACE_COUNT", 200001),
    ("NUM_INFERENCE_STEPS", 0), ("NUM_INFERENCE_STEPS", 101), ("GUIDANCE_SCALE", -0.5),
    ("GUIDANCE_SCALE", 30.5), ("GUIDANCE_SCALE", float("nan")), ("SEED", -1),
])
def test_out_of_range_values_are_refused_naming_the_input_and_the_allowed_range(name, value):
    parameter = contract.PARAMETERS_BY_NAME[name]
    with pytest.raises(ContractError) as caught:
        contract.validate_parameters({name: np.array([value], dtype=parameter.numpy_dtype)}, by="name")
    assert caught.value.field == name
    assert str(caught.value).startswith(f"{name}: ")
    assert f"[{parameter.minimum}, {parameter.maximum}]" in str(caught.value)


@pytest.mark.parametrize(("key", "value"), [
    ("seed", "5"), ("seed", True), ("texture", 1), ("octree_resolution", 64.5), ("guidance_scale", [1.0]),
])
def test_values_of_the_wrong_type_are_refused(key, value):
    with pytest.raises(ContractError) as caught:
        contract.validate_parameters({key: value})
    assert caught.value.field == key


def test_unknown_parameters_are_refused_naming_them_and_the_allowed_ones():
    with pytest.raises(ContractError) as caught:
        contract.validate_parameters({"octree": 64})
    assert caught.value.field == "octree"
    assert "octree_resolution" in str(caught.value)


def test_parameter_tensor_is_a_one_element_array_of_the_contract_dtype():
    for parameter in contract.PARAMETERS:
        tensor = contract.parameter_tensor(parameter, parameter.default)
        assert tensor.shape == (1,)
        assert tensor.dtype == parameter.numpy_dtype


@pytest.mark.parametrize(("shape", "dtype", "expected"), [
    ((64, 64, 2), np.uint8, "channels"),
    ((64, 64, 5), np.uint8, "channels"),
    ((64, 64), np.uint8, "rank 3"),
    ((1, 64, 64, 3), np.uint8, "rank 3"),
    ((64, 64, 3), np.float32, "UINT8"),
    ((0, 64, 3), np.uint8, "at least"),
    ((64, 0, 4), np.uint8, "at least"),
    ((contract.MAX_IMAGE_SIDE + 1, 8, 3), np.uint8, "at most"),
])
def test_bad_images_are_refused_naming_image_and_what_is_allowed(shape, dtype, expected):
    with pytest.raises(ContractError) as caught:
        contract.validate_image(np.zeros(shape, dtype=dtype))
    assert caught.value.field == contract.IMAGE_INPUT
    assert expected in str(caught.value)


def test_images_within_the_limits_are_accepted_in_both_channel_counts():
    for channels in contract.IMAGE_CHANNELS:
        image = np.zeros((contract.MIN_IMAGE_SIDE, 300, channels), np.uint8)
        assert contract.validate_image(image).shape == image.shape
