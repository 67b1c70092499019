"""A Triton server that is down or hangs up: ``{"error": ...}`` with the cause, nothing uploaded; retried
only when the request cannot have reached a model."""

from __future__ import annotations

import logging

import pytest
from hy3d_client import handle

from .conftest import FAST_RETRY, free_ports

pytestmark = pytest.mark.integration  # SeaweedFS


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_server_that_is_down_gives_an_error_and_nothing_is_uploaded(protocol, r2_env, isolated_dirs,
                                                                      object_png_b64, monkeypatch, caplog):
    (closed_port,) = free_ports(1)
    monkeypatch.setenv("HY3D_TRITON_URL", f"127.0.0.1:{closed_port}")
    monkeypatch.setenv("HY3D_TRITON_PROTOCOL", protocol)
    before = r2_env.object_keys()
    with caplog.at_level(logging.DEBUG):
        response = handle({"image": object_png_b64})
    assert set(response) == {"error"}
    assert "Connection refused" in response["error"]
    assert f"gave up after {FAST_RETRY.attempts} attempts" in response["error"]
    assert r2_env.object_keys() == before
    assert isolated_dirs.leftovers() == []
    assert r2_env.secret_key not in caplog.text and r2_env.access_key not in caplog.text


def test_a_grpc_server_that_hangs_up_before_the_handshake_is_retried_then_reported(r2_env, counting_listener,
                                                                                   object_png_b64, monkeypatch):
    # gRPC never got its HTTP/2 connection up ("failed to connect"): nothing was sent, so it is retried.
    monkeypatch.setenv("HY3D_TRITON_URL", counting_listener.url)
    monkeypatch.setenv("HY3D_TRITON_PROTOCOL", "grpc")
    before = r2_env.object_keys()
    response = handle({"image": object_png_b64})
    assert "error" in response and counting_listener.url in response["error"]
    assert f"gave up after {FAST_RETRY.attempts} attempts" in response["error"]
    assert counting_listener.connections >= FAST_RETRY.attempts  # one connection per attempt at least
    assert r2_env.object_keys() == before


def test_an_http_server_that_hangs_up_after_the_request_was_sent_is_reported_not_resent(
        r2_env, counting_listener, object_png_b64, monkeypatch):
    # The HTTP request went out before the connection closed: it may have reached a model.
    monkeypatch.setenv("HY3D_TRITON_URL", counting_listener.url)
    monkeypatch.setenv("HY3D_TRITON_PROTOCOL", "http")
    before = r2_env.object_keys()
    response = handle({"image": object_png_b64})
    assert "error" in response and counting_listener.url in response["error"]
    assert "connection closed" in response["error"]
    assert "gave up" not in response["error"]
    assert r2_env.object_keys() == before
