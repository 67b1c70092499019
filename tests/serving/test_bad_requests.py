"""Bad requests to a real tritonserver: each is refused with an error naming the input and what is allowed,
over HTTP (400) and gRPC (INVALID_ARGUMENT), and the server stays ready for the next request."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from hy3d_client import contract
from tritonclient.utils import InferenceServerException

from hy3d_tooling.health import is_ready

pytestmark = pytest.mark.integration

CLIENTS = {"http": httpclient, "grpc": grpcclient}
INVALID_STATUS = {"http": "400", "grpc": "StatusCode.INVALID_ARGUMENT"}
GOOD_IMAGE = np.zeros((64, 64, 4), np.uint8)
GOOD_IMAGE[16:48, 16:48] = 200


def tensor(protocol: str, name: str, array: np.ndarray, dtype: str):
    entry = CLIENTS[protocol].InferInput(name, list(array.shape), dtype)
    entry.set_data_from_numpy(array, **({"binary_data": True} if protocol == "http" else {}))
    return entry


def image_input(protocol: str, image: np.ndarray, dtype: str = "UINT8"):
    return tensor(protocol, "IMAGE", image, dtype)


def parameter_input(protocol: str, name: str, value, dtype: str | None = None):
    parameter = contract.PARAMETERS_BY_NAME.get(name)
    dtype = dtype or parameter.triton_dtype
    return tensor(protocol, name, np.array([value], dtype=contract.NUMPY_DTYPES[dtype]), dtype)


def send(server, protocol: str, inputs, model: str = contract.ENSEMBLE_MODEL) -> InferenceServerException:
    url = server.http_url if protocol == "http" else server.grpc_url
    client = CLIENTS[protocol].InferenceServerClient(url)
    with pytest.raises(InferenceServerException) as caught:
        client.infer(model, inputs)
    assert is_ready(server.http_url), "the server is no longer ready after a bad request"
    return caught.value


OUT_OF_RANGE = [
    ("OCTREE_RESOLUTION", 100000, "[16, 512]"),
    ("OCTREE_RESOLUTION", 8, "[16, 512]"),
    ("FACE_COUNT", 999, "[1000, 200000]"),
    ("NUM_INFERENCE_STEPS", 0, "[1, 100]"),
    ("GUIDANCE_SCALE", 31.0, "[0.0, 30.0]"),
    ("GUIDANCE_SCALE", float("nan"), "[0.0, 30.0]"),
    ("SEED", -1, "[0, 9223372036854775807]"),
]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize(("name", "value", "allowed"), OUT_OF_RANGE)
def test_out_of_range_parameter_is_refused_naming_it_and_its_range(triton_server, protocol, name, value, allowed):
    error = send(triton_server, protocol, [image_input(protocol, GOOD_IMAGE), parameter_input(protocol, name, value)])
    assert error.status() == INVALID_STATUS[protocol]
    assert f"invalid input {name}: " in error.message() and allowed in error.message()


BAD_IMAGES = [
    ("two channels", np.zeros((32, 32, 2), np.uint8), "expected C in {3, 4}"),
    ("five channels", np.zeros((32, 32, 5), np.uint8), "expected C in {3, 4}"),
    ("zero height", np.zeros((0, 32, 3), np.uint8), "at least 8 px"),
    ("zero width", np.zeros((32, 0, 4), np.uint8), "at least 8 px"),
    ("too small", np.zeros((4, 32, 3), np.uint8), "at least 8 px"),
    ("too tall", np.zeros((contract.MAX_IMAGE_SIDE + 1, 8, 3), np.uint8), "at most 4096 px"),
    ("empty mask", np.zeros((32, 32, 4), np.uint8), "the object mask is empty"),
]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize(("case", "image", "expected"), BAD_IMAGES, ids=[case for case, _, _ in BAD_IMAGES])
def test_bad_image_is_refused_naming_image_and_what_is_allowed(triton_server, protocol, case, image, expected):
    error = send(triton_server, protocol, [image_input(protocol, image)])
    assert error.status() == INVALID_STATUS[protocol]
    assert "invalid input IMAGE: " in error.message() and expected in error.message()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_image_of_the_wrong_dtype_is_refused_naming_it(triton_server, protocol):
    error = send(triton_server, protocol, [image_input(protocol, GOOD_IMAGE.astype(np.float32), "FP32")])
    assert "'IMAGE'" in error.message() and "UINT8" in error.message()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_image_of_the_wrong_rank_is_refused_naming_it(triton_server, protocol):
    error = send(triton_server, protocol, [image_input(protocol, GOOD_IMAGE[:, :, 0])])
    assert "'IMAGE'" in error.message() and "[-1,-1,-1]" in error.message()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_parameter_of_the_wrong_dtype_is_refused_naming_it(triton_server, protocol):
    error = send(triton_server, protocol,
                 [image_input(protocol, GOOD_IMAGE), parameter_input(protocol, "OCTREE_RESOLUTION", 64, "INT64")])
    assert "'OCTREE_RESOLUTION'" in error.message() and "INT32" in error.message()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_parameter_of_the_wrong_shape_is_refused_naming_it(triton_server, protocol):
    seeds = tensor(protocol, "SEED", np.array([1, 2], np.int64), "INT64")
    error = send(triton_server, protocol, [image_input(protocol, GOOD_IMAGE), seeds])
    assert "'SEED'" in error.message() and "[1]" in error.message()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_unknown_input_is_refused_naming_it(triton_server, protocol):
    error = send(triton_server, protocol,
                 [image_input(protocol, GOOD_IMAGE), tensor(protocol, "OCTREE", np.array([64], np.int32), "INT32")])
    assert "'OCTREE'" in error.message()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_missing_image_is_refused_and_the_server_stays_ready(triton_server, protocol):
    error = send(triton_server, protocol, [parameter_input(protocol, "SEED", 1)])
    assert error.status() == INVALID_STATUS[protocol]
    assert "IMAGE: required input is missing" in error.message()


def test_stage_called_directly_validates_its_parameters(triton_server):
    inputs = [tensor("http", "RGBA", GOOD_IMAGE, "UINT8"), parameter_input("http", "OCTREE_RESOLUTION", 100000)]
    error = send(triton_server, "http", inputs, model="shape_dit")
    assert error.status() == "400"
    assert error.message().startswith("shape_dit: invalid input OCTREE_RESOLUTION: 100000 is out of range")


def test_paint_stage_called_directly_checks_the_mesh(triton_server):
    inputs = [
        tensor("http", "VERTICES", np.zeros((3, 3), np.float32), "FP32"),
        tensor("http", "FACES", np.array([[0, 1, 7]], np.int32), "INT32"),
        tensor("http", "RGBA", GOOD_IMAGE, "UINT8"),
    ]
    error = send(triton_server, "http", inputs, model="paint_pbr")
    assert error.message() == "paint_pbr: invalid input FACES: every index must lie in [0, 2]"


def test_server_answers_a_good_request_after_all_the_bad_ones(triton_server):
    client = httpclient.InferenceServerClient(triton_server.http_url, network_timeout=600)
    inputs = [image_input("http", GOOD_IMAGE), parameter_input("http", "OCTREE_RESOLUTION", 32),
              parameter_input("http", "FACE_COUNT", 1000), parameter_input("http", "TEXTURE", False)]
    result = client.infer(contract.ENSEMBLE_MODEL, inputs)
    assert result.as_numpy("GLB")[0][:4] == b"glTF"
