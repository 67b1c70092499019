"""Retry promises: exponential backoff; only what cannot have reached a model is retried (refused
connections, Triton's UNAVAILABLE / 503 refusals); a timeout or DEADLINE_EXCEEDED is reported, never
resent, which the server's own counters confirm; the last error is kept."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from hy3d_client.r2 import is_transient_s3_error
from hy3d_client.retry import RetryPolicy, call_with_retries
from hy3d_client.transport import TritonTransport
from tritonclient.utils import InferenceServerException

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mug.png"
#: Client timeout of the slow call: far shorter than its request takes on the server.
SLOW_CALL_TIMEOUT_S = 0.5


class Flaky:
    """Fails with ``errors`` one after the other, then returns ``"done"``; counts calls."""

    def __init__(self, *errors: Exception):
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def test_delays_grow_exponentially_up_to_the_cap():
    policy = RetryPolicy(attempts=6, initial_delay_s=0.5, backoff_factor=2.0, max_delay_s=3.0)
    assert [policy.delay_after(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_transient_failures_are_retried_with_the_policy_delays():
    sleeps: list[float] = []
    operation = Flaky(ConnectionResetError(), TimeoutError())
    result = call_with_retries(operation, is_transient=lambda e: True, what="test",
                               policy=RetryPolicy(attempts=3, initial_delay_s=1.0, backoff_factor=3.0),
                               sleep=sleeps.append)
    assert (result, operation.calls, sleeps) == ("done", 3, [1.0, 3.0])


def test_the_last_error_propagates_once_attempts_are_spent(caplog):
    sleeps: list[float] = []
    operation = Flaky(*(ConnectionRefusedError(f"refused {n}") for n in range(5)))
    with pytest.raises(ConnectionRefusedError, match="refused 2"):
        call_with_retries(operation, is_transient=lambda e: True, what="reaching the test server",
                          policy=RetryPolicy(attempts=3, initial_delay_s=0.0), sleep=sleeps.append)
    assert operation.calls == 3 and len(sleeps) == 2
    assert "reaching the test server failed (attempt 1 of 3)" in caplog.text


def test_permanent_failures_are_not_retried():
    operation = Flaky(ValueError("bad input"))
    with pytest.raises(ValueError):
        call_with_retries(operation, is_transient=lambda e: False, policy=RetryPolicy(), what="test",
                          sleep=pytest.fail)
    assert operation.calls == 1


@pytest.mark.parametrize(("error", "transient"), [
    # Cannot have reached a model: retried.
    (InferenceServerException("failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: "
                              "Failed to connect to remote host: Connection refused",
                              status="StatusCode.UNAVAILABLE"), True),
    (InferenceServerException("in ensemble 'hy3d_ensemble', Exceeds maximum queue size",
                              status="StatusCode.UNAVAILABLE"), True),
    (InferenceServerException("Exceeds maximum queue size", status="503"), True),
    (InferenceServerException("Server not ready", status="503"), True),
    (InferenceServerException("Request for unknown model: 'hy3d_ensemble' has no available versions",
                              status="404"), True),
    (InferenceServerException("Request for unknown model: 'hy3d_ensemble' has no available versions",
                              status="StatusCode.NOT_FOUND"), True),
    (ConnectionRefusedError(111, "Connection refused"), True),
    # May be running on the server: reported, never resent.
    (InferenceServerException("Deadline Exceeded", status="StatusCode.DEADLINE_EXCEEDED"), False),
    (InferenceServerException("Socket closed", status="StatusCode.UNAVAILABLE"), False),
    (InferenceServerException("recvmsg:Connection reset by peer", status="StatusCode.UNAVAILABLE"), False),
    (InferenceServerException("bad gateway", status="502"), False),
    (InferenceServerException("gateway timeout", status="504"), False),
    (ConnectionResetError(104, "Connection reset by peer"), False),
    (TimeoutError("timed out"), False),
    # Answers of the model or of Triton about the request itself.
    (InferenceServerException("model raised", status="StatusCode.INTERNAL"), False),
    (InferenceServerException("Request for unknown model: 'nope' is not found", status="404"), False),
    (InferenceServerException("bad input", status="400"), False),
])
def test_only_failures_that_cannot_have_reached_a_model_are_retried(error, transient):
    assert TritonTransport.is_transient(error) is transient


def _client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "PutObject")


@pytest.mark.parametrize(("error", "transient"), [
    (_client_error("InternalError", 500), True),
    (_client_error("ServiceUnavailable", 503), True),
    (_client_error("SlowDown", 503), True),
    (_client_error("TooManyRequests", 429), True),
    (_client_error("AccessDenied", 403), False),
    (_client_error("SignatureDoesNotMatch", 403), False),
    (_client_error("NoSuchBucket", 404), False),
    (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), True),
    (ReadTimeoutError(endpoint_url="http://127.0.0.1:1"), True),
])
def test_store_failures_are_classified(error, transient):
    assert is_transient_s3_error(error) is transient


def _inferences(metrics_url: str, model: str) -> int:
    """Requests ``model`` has finished on the server (successes and failures), from its Prometheus metrics."""
    import urllib.request

    with urllib.request.urlopen(f"http://{metrics_url}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(("nv_inference_request_success{", "nv_inference_request_failure{")) \
                and f'model="{model}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def _pending(metrics_url: str, model: str) -> int:
    import urllib.request

    with urllib.request.urlopen(f"http://{metrics_url}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
               if line.startswith("nv_inference_pending_request_count{") and f'model="{model}"' in line)


@pytest.mark.integration
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_one_slow_call_that_times_out_causes_one_inference_on_the_server(triton_server, protocol):
    import time

    import numpy as np
    from hy3d_client.errors import ServerError
    from hy3d_client.sdk import Hy3DClient
    from PIL import Image

    image = np.asarray(Image.open(EXAMPLE).convert("RGBA"))
    url = triton_server.grpc_url if protocol == "grpc" else triton_server.http_url
    seed = 31000 + (protocol == "http")  # a request of its own: never answered from the response cache
    # Every ensemble request runs preprocess exactly once, so its count is the number of requests the call
    # caused. (The ensemble's own failure counter counts a cancelled request twice in Triton 2.51, and a
    # cancelled request may stop before shape_dit.)
    stages = ("preprocess",)
    before = {model: _inferences(triton_server.metrics_url, model) for model in stages}
    ensemble_before = _inferences(triton_server.metrics_url, "hy3d_ensemble")
    client = Hy3DClient(url, protocol, timeout_s=SLOW_CALL_TIMEOUT_S,
                        retry=RetryPolicy(attempts=4, initial_delay_s=0.01, max_delay_s=0.05))
    with pytest.raises(ServerError) as timed_out:
        client.generate_result(image, seed=seed, octree_resolution=256, face_count=40000)
    assert "gave up" not in str(timed_out.value)
    assert not timed_out.value.transient
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and (
            _pending(triton_server.metrics_url, "hy3d_ensemble") or
            _inferences(triton_server.metrics_url, "hy3d_ensemble") == ensemble_before):
        time.sleep(0.5)
    caused = {model: _inferences(triton_server.metrics_url, model) - before[model] for model in stages}
    assert caused == {model: 1 for model in stages}
