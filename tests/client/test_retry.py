"""Retry promises: exponential backoff, transient failures retried, permanent ones not, the last error kept."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from hy3d_client.r2 import is_transient_s3_error
from hy3d_client.retry import RetryPolicy, call_with_retries
from hy3d_client.transport import TritonTransport
from tritonclient.utils import InferenceServerException


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
    (InferenceServerException("failed to connect", status="StatusCode.UNAVAILABLE"), True),
    (InferenceServerException("Deadline Exceeded", status="StatusCode.DEADLINE_EXCEEDED"), True),
    (InferenceServerException("service unavailable", status="503"), True),
    (InferenceServerException("model raised", status="StatusCode.INTERNAL"), False),
    (InferenceServerException("unknown model", status="404"), False),
    (InferenceServerException("bad input", status="400"), False),
    (ConnectionRefusedError(111, "Connection refused"), True),
    (ConnectionResetError(104, "Connection reset by peer"), True),
    (TimeoutError("timed out"), True),
])
def test_triton_failures_are_classified(error, transient):
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
