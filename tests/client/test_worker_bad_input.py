"""Bad-job promises: ``{"error": ...}`` naming the field, and not a single connection to the server."""

from __future__ import annotations

import base64

import pytest
from hy3d_client import handle, worker_fn
from hy3d_client.images import MAX_BASE64_CHARS

from .samples import encode_png, object_photo, png_with_header

VALID_IMAGE = base64.b64encode(encode_png(object_photo(32))).decode()
R2_PLACEHOLDERS = {"CF_R2_ENDPOINT_URL": "http://127.0.0.1:9", "CF_R2_ACCESS_KEY": "AKIDPLACEHOLDER",
                   "CF_R2_SECRET_KEY": "placeholder-secret-key", "CF_R2_BUCKET": "never-used"}

BAD_JOBS = {
    "not_base64": ({"image": "this is not base64!"}, "image", "not valid base64"),
    "not_an_image": ({"image": base64.b64encode(b"plain text, no picture").decode()}, "image", "not a decodable image"),
    "over_the_size_limit": ({"image": "A" * (MAX_BASE64_CHARS + 8)}, "image", "bytes allowed"),
    "decompression_bomb": ({"image": base64.b64encode(png_with_header(60_000, 60_000)).decode()}, "image",
                           "decompression bomb"),
    "image_missing": ({"seed": 3}, "image", "required"),
    "image_not_a_string": ({"image": 12}, "image", "expected a base64 string"),
    "seed_as_string": ({"image": VALID_IMAGE, "seed": "12"}, "seed", "expected an integer"),
    "seed_negative": ({"image": VALID_IMAGE, "seed": -5}, "seed", "out of range"),
    "texture_not_bool": ({"image": VALID_IMAGE, "texture": "yes"}, "texture", "expected a boolean"),
    "face_count_too_small": ({"image": VALID_IMAGE, "face_count": 10}, "face_count", "out of range"),
    "octree_resolution_fractional": ({"image": VALID_IMAGE, "octree_resolution": 64.5}, "octree_resolution",
                                     "expected an integer"),
    "guidance_scale_too_large": ({"image": VALID_IMAGE, "guidance_scale": 1e9}, "guidance_scale", "out of range"),
    "unknown_key": ({"image": VALID_IMAGE, "steps": 5}, "steps", "unknown key; allowed: image, remove_background"),
    "not_an_object": (["image"], "job", "expected a JSON object"),
}


@pytest.fixture
def unused_server(counting_listener, monkeypatch):
    """Triton and the store configured, Triton's port counting connections."""
    monkeypatch.setenv("HY3D_TRITON_URL", counting_listener.url)
    for name, value in R2_PLACEHOLDERS.items():
        monkeypatch.setenv(name, value)
    return counting_listener


@pytest.mark.parametrize("protocol", ["grpc", "http"])
@pytest.mark.parametrize("case", sorted(BAD_JOBS))
def test_bad_job_gives_an_error_naming_the_field_without_calling_the_server(case, protocol, unused_server,
                                                                            monkeypatch):
    monkeypatch.setenv("HY3D_TRITON_PROTOCOL", protocol)
    job, field, detail = BAD_JOBS[case]
    response = handle(job)
    assert set(response) == {"error"}
    assert response["error"].startswith(f"{field}: ") and detail in response["error"]
    assert unused_server.connections == 0


def test_missing_store_configuration_is_reported_before_calling_the_server(counting_listener, monkeypatch):
    monkeypatch.setenv("HY3D_TRITON_URL", counting_listener.url)
    response = handle({"image": VALID_IMAGE})
    assert "missing environment variable(s)" in response["error"]
    assert "CF_R2_BUCKET" in response["error"]
    assert counting_listener.connections == 0


def test_worker_fn_unwraps_the_platform_envelope(unused_server):
    job, _, _ = BAD_JOBS["seed_negative"]
    expected = handle(job)
    assert worker_fn({"id": "job-1", "input": job}) == expected
    assert worker_fn(job) == expected
    assert unused_server.connections == 0


def test_bad_settings_are_an_error_response_not_an_exception(monkeypatch):
    monkeypatch.setenv("HY3D_TRITON_PROTOCOL", "carrier-pigeon")
    for name, value in R2_PLACEHOLDERS.items():
        monkeypatch.setenv(name, value)
    response = handle({"image": VALID_IMAGE})
    assert response["error"].startswith("HY3D_TRITON_PROTOCOL: expected one of grpc, http")
