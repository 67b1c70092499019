"""Custom metrics and status codes (issue 10.7) through a real tritonserver with the built-in engines.

Promises: the metrics port shows, next to Triton's own, a histogram of every phase's duration per stage,
the engine each stage runs, and (tests/serving/test_cancel.py, test_stream.py) the cancellations; every
refusal by our own input checks is INVALID_ARGUMENT / HTTP 400 naming the input, direct stage calls
included; what Triton itself answers to a malformed HTTP body is pinned here (and stated in the README).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from hy3d_client import contract
from tritonclient.utils import InferenceServerException

from hy3d_serving.metrics import (
    ENGINE_METRIC,
    PHASE_DURATION_BUCKETS_S,
    PHASE_DURATION_METRIC,
)
from hy3d_serving.progress import PROGRESS_CHANNEL_INPUT

from .ensemble_client import generate
from .test_ensemble import example_rgba

pytestmark = pytest.mark.integration

CLIENTS = {"http": httpclient, "grpc": grpcclient}
INVALID_STATUS = {"http": "400", "grpc": "StatusCode.INVALID_ARGUMENT"}
#: Side of the RGBA images whose object mask is empty, per protocol: each test sends inputs of its own,
#: so that no answer comes from the stages' response cache.
EMPTY_MASK_SIDE = {"http": 32, "grpc": 33}


def empty_mask(protocol: str, extra_rows: int = 0) -> np.ndarray:
    side = EMPTY_MASK_SIDE[protocol]
    return np.zeros((side + extra_rows, side, 4), np.uint8)


def metrics_text(server) -> str:
    with urllib.request.urlopen(f"http://{server.metrics_url}/metrics", timeout=10) as page:
        return page.read().decode()


def samples(text: str, metric: str, **labels: str) -> list[float]:
    """Values of the samples of ``metric`` carrying every one of ``labels``."""
    values = []
    for line in text.splitlines():
        if not line.startswith(metric + "{"):
            continue
        label_text = line[len(metric) + 1:line.index("}")]
        if all(f'{key}="{value}"' in label_text for key, value in labels.items()):
            values.append(float(line.rsplit(" ", 1)[1]))
    return values


@pytest.fixture(scope="module")
def after_one_request(triton_server) -> str:
    generate(triton_server.grpc_url, "grpc", example_rgba(), {"octree_resolution": 48, "face_count": 1000,
                                                              "seed": 61})
    return metrics_text(triton_server)


@pytest.mark.parametrize(("model", "phase"), [
    ("preprocess", "preprocess"), ("shape_dit", "shape:decode"), ("shape_dit", "shape:postprocess"),
    ("paint_pbr", "paint:uv"), ("paint_pbr", "paint:bake"), ("paint_pbr", "export"),
])
def test_each_phase_of_each_stage_has_a_duration_histogram(after_one_request, model, phase):
    counts = samples(after_one_request, PHASE_DURATION_METRIC + "_count", model=model, phase=phase)
    assert counts and counts[0] >= 1
    sums = samples(after_one_request, PHASE_DURATION_METRIC + "_sum", model=model, phase=phase)
    assert sums and sums[0] >= 0
    buckets = samples(after_one_request, PHASE_DURATION_METRIC + "_bucket", model=model, phase=phase)
    assert len(buckets) == len(PHASE_DURATION_BUCKETS_S) + 1  # and +Inf
    assert buckets == sorted(buckets) and buckets[-1] == counts[0]


@pytest.mark.parametrize(("model", "engine"), [
    ("shape_dit", "builtin-silhouette"), ("paint_pbr", "builtin-projection"),
])
def test_the_engine_each_stage_runs_is_a_metric(after_one_request, model, engine):
    assert samples(after_one_request, ENGINE_METRIC, model=model, engine=engine) == [1.0]


def send(server, protocol: str, model: str, inputs: dict[str, tuple[np.ndarray, str]]) -> InferenceServerException:
    module = CLIENTS[protocol]
    client = module.InferenceServerClient(server.http_url if protocol == "http" else server.grpc_url)
    tensors = []
    for name, (array, dtype) in inputs.items():
        tensor = module.InferInput(name, list(array.shape), dtype)
        tensor.set_data_from_numpy(array, **({"binary_data": True} if protocol == "http" else {}))
        tensors.append(tensor)
    with pytest.raises(InferenceServerException) as caught:
        client.infer(model, tensors)
    return caught.value


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("model", ["shape_dit", "paint_pbr"])
def test_a_direct_stage_call_with_an_empty_object_mask_is_invalid_argument_naming_rgba(triton_server, protocol, model):
    inputs = {"RGBA": (empty_mask(protocol), "UINT8")}
    if model == "paint_pbr":
        inputs = {"VERTICES": (np.eye(3, dtype=np.float32), "FP32"), "FACES": (np.array([[0, 1, 2]], np.int32), "INT32"),
                  **inputs}
    error = send(triton_server, protocol, model, inputs)
    assert error.status() == INVALID_STATUS[protocol]
    assert error.message() == f"{model}: invalid input RGBA: the object mask is empty: its alpha channel is 0 everywhere"


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_progress_channel_not_made_by_the_stream_is_invalid_argument_naming_it(triton_server, protocol):
    error = send(triton_server, protocol, "shape_dit", {"RGBA": (example_rgba(), "UINT8"), PROGRESS_CHANNEL_INPUT: (
        np.array([f"/tmp/somewhere-{protocol}".encode()], dtype=np.object_), "BYTES")})
    assert error.status() == INVALID_STATUS[protocol]
    assert error.message().startswith(f"shape_dit: invalid input {PROGRESS_CHANNEL_INPUT}: ")


def test_an_empty_object_mask_through_the_ensemble_is_invalid_argument_naming_image(triton_server):
    error = send(triton_server, "grpc", contract.ENSEMBLE_MODEL, {"IMAGE": (empty_mask("grpc", 5), "UINT8")})
    assert error.status() == INVALID_STATUS["grpc"]
    assert "preprocess: invalid input IMAGE: the object mask is empty" in error.message()


def one_pixel_mask(side: int) -> np.ndarray:
    image = np.zeros((side, side, 4), np.uint8)
    image[side // 2, side // 2] = 255
    return image


@pytest.mark.parametrize(("model", "name", "side"), [(contract.ENSEMBLE_MODEL, "IMAGE", 40), ("shape_dit", "RGBA", 41)])
def test_a_one_pixel_object_mask_is_invalid_argument_naming_the_image_not_an_engine_failure(triton_server, model,
                                                                                             name, side):
    error = send(triton_server, "grpc", model, {name: (one_pixel_mask(side), "UINT8")})
    assert error.status() == INVALID_STATUS["grpc"]
    assert f"invalid input {name}: the object mask is unusable: the object mask spans 1 row(s)" in error.message()


def test_a_repeated_refused_request_is_refused_again_naming_the_input(triton_server):
    # Guards the stages' configs: with a response_cache on a Python stage, Triton 2.51 replays a cached
    # error response as an empty success (the second identical direct call answers with no outputs, and a
    # repeated bad ensemble request then fails in shape_dit with "missing required input(s) ['RGBA']").
    inputs = {"RGBA": (empty_mask("grpc", 2), "UINT8")}
    for _ in range(2):
        error = send(triton_server, "grpc", "shape_dit", inputs)
        assert error.status() == INVALID_STATUS["grpc"]
        assert "invalid input RGBA" in error.message()


def http_status(server, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(f"http://{server.http_url}/v2/models/{contract.ENSEMBLE_MODEL}/infer",
                                     data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


@pytest.mark.parametrize(("case", "body"), [
    ("not JSON", b"{not json"),
    ("JSON without inputs", b'{"outputs": []}'),
    ("data of the wrong size", b'{"inputs":[{"name":"SEED","datatype":"INT64","shape":[1],"data":[1,2]}]}'),
])
def test_a_malformed_http_body_is_refused_by_triton_itself_with_500_before_any_model(triton_server, case, body):
    # Triton 2.51's HTTP frontend answers a body it cannot parse with 500 (not 400); no model sees it.
    status, text = http_status(triton_server, body)
    assert status == 500, (case, status, text)
    assert json.loads(text)["error"]
