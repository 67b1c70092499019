"""End to end: ``handle``, ``generate`` and the CLI against the real tritonserver (built-in engines, the
shared ``triton_server`` fixture) and the real S3 server (SeaweedFS).

Promises: a job comes back as a working presigned link to the very GLB the server makes, over gRPC and
HTTP; store failures (wrong credentials, missing bucket), Triton errors and timeouts come back as
``{"error": ...}`` with the cause and leave no object and no local file; no credential reaches the logs.
"""

from __future__ import annotations

import base64
import io
import json
import logging

import pytest
from hy3d_client import Hy3DClient, generate, handle
from hy3d_client.cli import main
from hy3d_client.r2 import GLB_CONTENT_TYPE
from PIL import Image

from .conftest import FAST_RETRY, free_ports
from .samples import encode_png, object_photo
from .test_upload import download

pytestmark = pytest.mark.integration

#: Small settings that keep an untextured request under a second on a 2-core machine.
SMALL = {"octree_resolution": 64, "face_count": 1000, "seed": 4321}
#: A timeout no generation meets, in seconds, and a request that takes 20x longer (about 0.4 s warm).
TOO_SHORT_TIMEOUT_S = 0.02
SLOW_REQUEST = {**SMALL, "octree_resolution": 128, "texture": False}


def url_of(server, protocol: str) -> str:
    return server.grpc_url if protocol == "grpc" else server.http_url


def assert_is_glb(data: bytes) -> None:
    """Binary glTF 2.0 whose header length matches the data."""
    assert data[:4] == b"glTF" and int.from_bytes(data[4:8], "little") == 2
    assert int.from_bytes(data[8:12], "little") == len(data)


@pytest.fixture
def served(triton_server, r2_env, monkeypatch):
    """The worker's environment: Triton over ``HY3D_TRITON_*`` (gRPC) and the store over ``CF_R2_*``."""
    monkeypatch.setenv("HY3D_TRITON_URL", triton_server.grpc_url)
    return r2_env


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_job_comes_back_as_a_link_to_the_glb_the_server_made(protocol, triton_server, served, monkeypatch,
                                                                isolated_dirs, object_png_b64, caplog):
    monkeypatch.setenv("HY3D_TRITON_URL", url_of(triton_server, protocol))
    monkeypatch.setenv("HY3D_TRITON_PROTOCOL", protocol)
    with caplog.at_level(logging.DEBUG):
        response = handle({"image": object_png_b64, "texture": False, **SMALL})
    assert set(response) == {"download_url", "textured", "seed", "uid"}, response
    assert (response["textured"], response["seed"]) == (False, SMALL["seed"])
    assert f"hunyuan3d-21-{response['uid']}.glb" in served.object_keys()
    status, body, content_type = download(response["download_url"])
    assert (status, content_type) == (200, GLB_CONTENT_TYPE)
    assert_is_glb(body)
    # The same request through the SDK (other protocol, the image as a PIL object) gives the same bytes.
    other = "http" if protocol == "grpc" else "grpc"
    same = generate(object_photo(), url=url_of(triton_server, other), protocol=other, texture=False, **SMALL)
    assert same == body
    assert isolated_dirs.leftovers() == []
    assert served.access_key not in caplog.text and served.secret_key not in caplog.text


@pytest.mark.slow
def test_a_textured_job_reports_textured_and_the_default_seed(served, object_png_b64):
    response = handle({"image": object_png_b64, "octree_resolution": SMALL["octree_resolution"],
                       "face_count": SMALL["face_count"]})
    assert response.get("textured") is True and response["seed"] == 1234, response
    assert_is_glb(download(response["download_url"])[1])


def test_wrong_store_credentials_give_an_error_without_leaking_them(served, monkeypatch, isolated_dirs,
                                                                    object_png_b64, caplog):
    wrong_secret = "wrong-secret-" + base64.b32encode(b"hy3d-test").decode()
    monkeypatch.setenv("CF_R2_SECRET_KEY", wrong_secret)
    before = served.object_keys()
    with caplog.at_level(logging.DEBUG):
        response = handle({"image": object_png_b64, "texture": False, **SMALL})
    assert set(response) == {"error"} and "SignatureDoesNotMatch" in response["error"]
    assert served.object_keys() == before
    for secret in (wrong_secret, served.access_key):
        assert secret not in response["error"] and secret not in caplog.text
    assert isolated_dirs.leftovers() == []


def test_an_unreachable_store_is_retried_then_reported(served, monkeypatch, isolated_dirs, object_png_b64, caplog):
    (closed_port,) = free_ports(1)
    monkeypatch.setenv("CF_R2_ENDPOINT_URL", f"http://127.0.0.1:{closed_port}")
    with caplog.at_level(logging.WARNING):
        response = handle({"image": object_png_b64, "texture": False, **SMALL})
    assert set(response) == {"error"} and "Could not connect to the endpoint URL" in response["error"]
    assert f"gave up after {FAST_RETRY.attempts} attempts" in response["error"]
    assert caplog.text.count("failed (attempt") == FAST_RETRY.attempts - 1
    assert isolated_dirs.leftovers() == []


def test_a_missing_bucket_gives_an_error(served, monkeypatch, isolated_dirs, object_png_b64):
    monkeypatch.setenv("CF_R2_BUCKET", "no-such-bucket")
    response = handle({"image": object_png_b64, "texture": False, **SMALL})
    assert set(response) == {"error"} and "no-such-bucket" in response["error"]
    assert isolated_dirs.leftovers() == []


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_triton_error_comes_back_with_the_servers_message_and_nothing_is_uploaded(
        protocol, triton_server, served, monkeypatch, isolated_dirs):
    monkeypatch.setenv("HY3D_TRITON_URL", url_of(triton_server, protocol))
    monkeypatch.setenv("HY3D_TRITON_PROTOCOL", protocol)
    invisible = base64.b64encode(encode_png(Image.new("RGBA", (64, 64), (0, 0, 0, 0)))).decode()
    before = served.object_keys()
    response = handle({"image": invisible, **SMALL})
    assert set(response) == {"error"}
    assert "preprocess" in response["error"] and "mask is empty" in response["error"]  # the server's own words
    assert served.object_keys() == before
    assert isolated_dirs.leftovers() == []


def test_an_unknown_model_is_a_triton_error(triton_server, served, monkeypatch, object_png_b64):
    monkeypatch.setenv("HY3D_TRITON_MODEL", "hy3d_no_such_model")
    response = handle({"image": object_png_b64, **SMALL})
    assert "unknown model" in response["error"] and "hy3d_no_such_model" in response["error"]


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_timeout_is_reported_without_a_retry_and_nothing_is_uploaded(protocol, triton_server, served, monkeypatch,
                                                                        isolated_dirs, object_png_b64, caplog):
    monkeypatch.setenv("HY3D_TRITON_URL", url_of(triton_server, protocol))
    monkeypatch.setenv("HY3D_TRITON_PROTOCOL", protocol)
    monkeypatch.setenv("HY3D_TRITON_TIMEOUT_S", str(TOO_SHORT_TIMEOUT_S))
    monkeypatch.setenv("HY3D_RETRY_ATTEMPTS", "2")
    before = served.object_keys()
    with caplog.at_level(logging.WARNING):
        response = handle({"image": object_png_b64, **SLOW_REQUEST})
    assert set(response) == {"error"}
    assert ("Deadline Exceeded" if protocol == "grpc" else "timed out") in response["error"]
    # The request may still be running on the server: resending it would multiply the load.
    assert "gave up after" not in response["error"]
    assert "attempt 1 of 2" not in caplog.text
    assert served.object_keys() == before
    assert isolated_dirs.leftovers() == []


def test_cli_generate_writes_the_glb_and_prints_a_summary(triton_server, isolated_dirs, capsys):
    image = isolated_dirs.cwd / "object.png"
    image.write_bytes(encode_png(object_photo()))
    status = main(["generate", str(image), "--out", "object.glb", "--no-texture", "--url", triton_server.http_url,
                   "--protocol", "http", "--seed", "99", "--octree-resolution", "64", "--face-count", "1000"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    summary = json.loads(captured.out)
    assert (summary["path"], summary["textured"], summary["seed"]) == ("object.glb", False, 99)
    glb = (isolated_dirs.cwd / "object.glb").read_bytes()
    assert_is_glb(glb) and summary["bytes"] == len(glb)
    assert captured.err == ""  # stderr is not a terminal: no spinner


def test_cli_job_prints_the_worker_response(triton_server, served, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(
        {"id": "platform-job-1", "input": {"image": base64.b64encode(encode_png(object_photo())).decode(),
                                           "texture": False, **SMALL}})))
    status = main(["job", "-", "--url", triton_server.grpc_url])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    response = json.loads(captured.out)
    assert_is_glb(download(response["download_url"])[1])


def test_sdk_client_reports_the_engines_used(triton_server):
    result = Hy3DClient(triton_server.grpc_url, retry=FAST_RETRY).generate_result(
        object_photo(), texture=False, **SMALL)
    assert result.engine == "shape=builtin-silhouette;paint=none"
    assert (result.textured, result.seed) == (False, SMALL["seed"])
