"""Request building promises: tensor names, dtypes and shapes come from the contract; data travels binary."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from hy3d_client.contract import (
    DEFAULTS,
    ENGINE_OUTPUT,
    GLB_OUTPUT,
    IMAGE_INPUT,
    PARAMETERS,
    SEED_OUTPUT,
    TEXTURED_OUTPUT,
    ContractError,
)
from hy3d_client.request import OUTPUT_NAMES, GenerationResult, InferenceRequest, requested_outputs

IMAGE = np.zeros((32, 24, 4), dtype=np.uint8)


def test_every_contract_parameter_is_sent_with_its_dtype_and_shape_1():
    request = InferenceRequest.build(IMAGE, {"seed": 7})
    tensors = {name: (dtype, array) for name, dtype, array in request.tensors()}
    assert list(tensors) == [IMAGE_INPUT] + [p.name for p in PARAMETERS]
    for parameter in PARAMETERS:
        dtype, array = tensors[parameter.name]
        assert dtype == parameter.triton_dtype
        assert array.shape == (1,) and array.dtype == parameter.numpy_dtype
    assert tensors["SEED"][1][0] == 7


def test_parameters_left_out_are_sent_with_the_contract_defaults():
    request = InferenceRequest.build(IMAGE, {})
    assert dict(request.parameters) == DEFAULTS


def test_image_is_sent_as_uint8_hwc_unchanged():
    request = InferenceRequest.build(IMAGE, {})
    name, dtype, array = request.tensors()[0]
    assert (name, dtype, array.shape) == (IMAGE_INPUT, "UINT8", (32, 24, 4))


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("seed", "12", "seed: expected an integer"),
    ("seed", -1, "seed: -1 is out of range"),
    ("texture", 1, "texture: expected a boolean"),
    ("guidance_scale", float("nan"), "guidance_scale: expected a finite number"),
    ("octree_resolution", 4096, "octree_resolution: 4096 is out of range"),
    ("colour", "red", "colour: unknown parameter"),
])
def test_bad_parameters_raise_a_contract_error_naming_the_key(key, value, expected):
    with pytest.raises(ContractError, match=expected):
        InferenceRequest.build(IMAGE, {key: value})


def test_http_request_carries_every_tensor_as_binary_data():
    request = InferenceRequest.build(IMAGE, {"texture": False})
    body, json_size = httpclient.InferenceServerClient.generate_request_body(
        request.triton_inputs(httpclient), outputs=requested_outputs(httpclient)
    )
    assert json_size is not None  # a JSON header followed by raw tensor bytes
    header = json.loads(body[:json_size])
    for tensor in header["inputs"]:
        assert "data" not in tensor and tensor["parameters"]["binary_data_size"] > 0
    assert {o["name"] for o in header["outputs"]} == set(OUTPUT_NAMES)
    assert all(o["parameters"]["binary_data"] for o in header["outputs"])
    assert len(body) - json_size == sum(array.nbytes for _, _, array in request.tensors())


def test_grpc_inputs_have_the_contract_names_dtypes_and_shapes():
    request = InferenceRequest.build(IMAGE, {})
    inputs = request.triton_inputs(grpcclient)
    assert [(i.name(), i.datatype(), i.shape()) for i in inputs] == [
        (name, dtype, list(array.shape)) for name, dtype, array in request.tensors()
    ]
    assert [o.name() for o in requested_outputs(grpcclient)] == list(OUTPUT_NAMES)


def test_result_reads_the_four_outputs():
    result = GenerationResult.from_outputs({
        GLB_OUTPUT: np.array([b"glTF\x02\x00\x00\x00"], dtype=np.object_),
        TEXTURED_OUTPUT: np.array([True]),
        SEED_OUTPUT: np.array([42], dtype=np.int64),
        ENGINE_OUTPUT: np.array([b"shape=builtin-silhouette;paint=builtin-projection"], dtype=np.object_),
    })
    assert result == GenerationResult(b"glTF\x02\x00\x00\x00", True, 42, "shape=builtin-silhouette;paint=builtin-projection")


def test_result_missing_an_output_is_reported_by_name():
    with pytest.raises(ValueError, match="lacks output ENGINE"):
        GenerationResult.from_outputs({
            GLB_OUTPUT: np.array([b"glTF"], dtype=np.object_),
            TEXTURED_OUTPUT: np.array([False]),
            SEED_OUTPUT: np.array([1], dtype=np.int64),
        })
