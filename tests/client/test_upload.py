"""Upload promises, against a real S3 server (SeaweedFS): byte-identical download through the presigned
URL, a short expiry that really expires, clear errors for wrong credentials, a missing bucket or an
unreachable store (retried first), no secret in logs or errors, no local file left behind."""

from __future__ import annotations

import logging
import os
import re
import time
import urllib.error
import urllib.request
import uuid

import pytest
from hy3d_client.errors import UploadError
from hy3d_client.r2 import GLB_CONTENT_TYPE, R2Settings, R2Uploader

from .conftest import free_ports

pytestmark = pytest.mark.integration  # SeaweedFS

#: Seconds a test waits for a presigned URL to outlive its expiry.
EXPIRY_WAIT_S = 2.5
#: How long a test download may take, in seconds.
DOWNLOAD_TIMEOUT_S = 10


def fake_glb(size: int = 200_000) -> bytes:
    """Bytes shaped like a GLB header followed by incompressible content."""
    return b"glTF" + (2).to_bytes(4, "little") + size.to_bytes(4, "little") + os.urandom(size - 12)


def settings_for(server, **overrides) -> R2Settings:
    values = {"endpoint_url": server.endpoint_url, "bucket": server.bucket, "access_key": server.access_key,
              "secret_key": server.secret_key}
    values.update(overrides)
    return R2Settings(**values)


def download(url: str) -> tuple[int, bytes, str]:
    """Status, body and content type of a GET on ``url``."""
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers.get("Content-Type", "")


def test_upload_then_presigned_download_gives_identical_bytes(s3_server, isolated_dirs, fast_retry):
    glb = fake_glb()
    uid = str(uuid.uuid4())
    uploaded = R2Uploader(settings_for(s3_server), retry=fast_retry).upload_glb(glb, uid)
    assert uploaded.key == f"hunyuan3d-21-{uid}.glb"
    assert re.fullmatch(r"hunyuan3d-21-[0-9a-f-]{36}\.glb", uploaded.key)
    status, body, content_type = download(uploaded.download_url)
    assert (status, content_type) == (200, GLB_CONTENT_TYPE)
    assert body == glb
    assert isolated_dirs.leftovers() == []


def test_presigned_url_stops_working_after_its_expiry(s3_server, isolated_dirs, fast_retry):
    uploaded = R2Uploader(settings_for(s3_server, url_expiry_s=1), retry=fast_retry).upload_glb(
        fake_glb(1000), str(uuid.uuid4()))
    assert "X-Amz-Expires=1" in uploaded.download_url
    assert download(uploaded.download_url)[0] == 200
    time.sleep(EXPIRY_WAIT_S)
    assert download(uploaded.download_url)[0] == 403
    assert isolated_dirs.leftovers() == []


def test_a_tampered_signature_is_refused(s3_server, fast_retry):
    uploaded = R2Uploader(settings_for(s3_server), retry=fast_retry).upload_glb(fake_glb(1000), str(uuid.uuid4()))
    signature = re.search(r"X-Amz-Signature=([0-9a-f]+)", uploaded.download_url).group(1)
    tampered = uploaded.download_url.replace(signature, signature[::-1])
    assert download(tampered)[0] == 403


def test_wrong_credentials_are_reported_without_retrying_or_leaking_them(s3_server, isolated_dirs, fast_retry,
                                                                          caplog):
    wrong_secret = "wrong-" + uuid.uuid4().hex
    uploader = R2Uploader(settings_for(s3_server, secret_key=wrong_secret), retry=fast_retry)
    with caplog.at_level(logging.DEBUG), pytest.raises(UploadError) as caught:
        uploader.upload_glb(fake_glb(1000), str(uuid.uuid4()))
    message = str(caught.value)
    assert "SignatureDoesNotMatch" in message and "HTTP 403" in message
    assert "attempt 1 of" not in caplog.text  # a refusal is final
    for secret in (wrong_secret, s3_server.access_key):
        assert secret not in message and secret not in caplog.text
    assert isolated_dirs.leftovers() == []


def test_a_missing_bucket_is_reported(s3_server, isolated_dirs, fast_retry):
    uploader = R2Uploader(settings_for(s3_server, bucket="no-such-bucket-" + uuid.uuid4().hex[:8]), retry=fast_retry)
    with pytest.raises(UploadError, match="no-such-bucket-.* failed"):
        uploader.upload_glb(fake_glb(1000), str(uuid.uuid4()))
    assert isolated_dirs.leftovers() == []


def test_an_unreachable_store_is_retried_then_reported(s3_server, isolated_dirs, fast_retry, caplog):
    (closed_port,) = free_ports(1)
    uploader = R2Uploader(settings_for(s3_server, endpoint_url=f"http://127.0.0.1:{closed_port}"), retry=fast_retry)
    with caplog.at_level(logging.DEBUG), pytest.raises(UploadError) as caught:
        uploader.upload_glb(fake_glb(1000), str(uuid.uuid4()))
    assert f"gave up after {fast_retry.attempts} attempts" in str(caught.value)
    assert "Could not connect to the endpoint URL" in str(caught.value)
    retries = [r for r in caplog.records if "failed (attempt" in r.getMessage()]
    assert len(retries) == fast_retry.attempts - 1
    assert s3_server.secret_key not in caplog.text and s3_server.access_key not in caplog.text
    assert isolated_dirs.leftovers() == []


def test_no_credential_appears_in_the_logs_of_a_successful_upload(s3_server, fast_retry, caplog):
    with caplog.at_level(logging.DEBUG):
        R2Uploader(settings_for(s3_server), retry=fast_retry).upload_glb(fake_glb(1000), str(uuid.uuid4()))
    assert any(r.name.startswith("botocore") for r in caplog.records)  # the library did log at DEBUG
    assert s3_server.access_key not in caplog.text and s3_server.secret_key not in caplog.text
