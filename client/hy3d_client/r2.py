"""Store a GLB in Cloudflare R2 (or any S3-compatible store) and hand back a presigned download URL.

The object is uploaded from memory (no local file) as ``hunyuan3d-21-<uid>.glb`` with content type
``model/gltf-binary``. Configuration comes from the environment; credentials are registered for
redaction as soon as they are read, so no message or log line of this package shows them.
boto3 is an optional dependency (``pip install 'hy3d-client[upload]'``): it is imported only when an
upload is made, and an uploader made without it fails at once with a message saying what to install.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigurationError, UploadError
from .redaction import redact, register_secrets
from .retry import RetryPolicy, call_with_retries, describe_exception, gave_up_note

logger = logging.getLogger(__name__)

ACCOUNT_ID_ENV = "CF_R2_ACCOUNT_ID"
ACCESS_KEY_ENV = "CF_R2_ACCESS_KEY"
SECRET_KEY_ENV = "CF_R2_SECRET_KEY"
BUCKET_ENV = "CF_R2_BUCKET"
ENDPOINT_URL_ENV = "CF_R2_ENDPOINT_URL"
URL_EXPIRY_ENV = "HY3D_DOWNLOAD_URL_EXPIRY_S"

#: R2's S3 endpoint for an account.
R2_ENDPOINT_TEMPLATE = "https://{account_id}.r2.cloudflarestorage.com"
#: R2 takes region "auto".
R2_REGION = "auto"
#: Object name of an uploaded asset.
OBJECT_KEY_TEMPLATE = "hunyuan3d-21-{uid}.glb"
GLB_CONTENT_TYPE = "model/gltf-binary"
#: Lifetime of the presigned download URL, in seconds.
DEFAULT_URL_EXPIRY_S = 3600
#: Longest lifetime of a SigV4 presigned URL (7 days), in seconds.
MAX_URL_EXPIRY_S = 7 * 24 * 3600
#: Socket timeouts of the store client, in seconds.
S3_CONNECT_TIMEOUT_S = 10.0
S3_READ_TIMEOUT_S = 60.0
#: How to install the optional upload dependency (boto3).
UPLOAD_EXTRA_HINT = "pip install 'hy3d-client[upload]' (or pip install boto3)"
#: S3 error codes worth another attempt (besides any HTTP 5xx or 429).
TRANSIENT_S3_ERROR_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "TooManyRequests", "RequestLimitExceeded",
     "RequestTimeout", "ServiceUnavailable", "InternalError"}
)


@dataclass(frozen=True)
class R2Settings:
    """Where to store assets. ``repr`` never shows the keys."""

    endpoint_url: str
    bucket: str
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    url_expiry_s: int = DEFAULT_URL_EXPIRY_S

    def __post_init__(self) -> None:
        register_secrets([self.access_key, self.secret_key])
        if not self.endpoint_url.startswith(("https://", "http://")):
            raise ConfigurationError(ENDPOINT_URL_ENV, f"expected an http(s):// URL, got {redact(self.endpoint_url)!r}")
        if not 1 <= self.url_expiry_s <= MAX_URL_EXPIRY_S:
            raise ConfigurationError(
                URL_EXPIRY_ENV, f"expected seconds in [1, {MAX_URL_EXPIRY_S}], got {self.url_expiry_s!r}"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, url_expiry_s: int | None = None) -> R2Settings:
        """Read ``CF_R2_ACCOUNT_ID``, ``CF_R2_ACCESS_KEY``, ``CF_R2_SECRET_KEY``, ``CF_R2_BUCKET``,
        ``CF_R2_ENDPOINT_URL`` (replaces the account's R2 endpoint; the account id is then not needed)
        and ``HY3D_DOWNLOAD_URL_EXPIRY_S``.

        Raises ``ConfigurationError`` listing every missing variable (names only, never values).
        """
        environ = os.environ if environ is None else environ
        values = {name: (environ.get(name) or "").strip() for name in
                  (ACCOUNT_ID_ENV, ACCESS_KEY_ENV, SECRET_KEY_ENV, BUCKET_ENV, ENDPOINT_URL_ENV)}
        register_secrets([values[ACCESS_KEY_ENV], values[SECRET_KEY_ENV]])
        required = [ACCESS_KEY_ENV, SECRET_KEY_ENV, BUCKET_ENV]
        if not values[ENDPOINT_URL_ENV]:
            required.insert(0, ACCOUNT_ID_ENV)
        missing = [name for name in required if not values[name]]
        if missing:
            raise ConfigurationError(", ".join(missing), "missing environment variable(s), needed to upload the GLB")
        if url_expiry_s is None:
            raw = (environ.get(URL_EXPIRY_ENV) or "").strip()
            try:
                url_expiry_s = int(raw) if raw else DEFAULT_URL_EXPIRY_S
            except ValueError:
                raise ConfigurationError(URL_EXPIRY_ENV, f"expected an integer number of seconds, got {raw!r}") from None
        endpoint = values[ENDPOINT_URL_ENV] or R2_ENDPOINT_TEMPLATE.format(account_id=values[ACCOUNT_ID_ENV])
        return cls(
            endpoint_url=endpoint.rstrip("/"),
            bucket=values[BUCKET_ENV],
            access_key=values[ACCESS_KEY_ENV],
            secret_key=values[SECRET_KEY_ENV],
            url_expiry_s=url_expiry_s,
        )


@dataclass(frozen=True)
class UploadedObject:
    """A stored asset: its object key and a presigned GET URL valid for ``expires_in_s`` seconds."""

    key: str
    download_url: str = field(repr=False)
    expires_in_s: int


def object_key(uid: str) -> str:
    """The object name of the asset of request ``uid``."""
    return OBJECT_KEY_TEMPLATE.format(uid=uid)


class R2Uploader:
    """Uploads GLB bytes with boto3 and presigns their download URL."""

    def __init__(self, settings: R2Settings, retry: RetryPolicy | None = None):
        """Raises ``UploadError`` naming the package to install when boto3 is missing (it is not imported here)."""
        if importlib.util.find_spec("boto3") is None:
            raise UploadError(f"uploading the GLB needs boto3, which is not installed: {UPLOAD_EXTRA_HINT}")
        self.settings = settings
        self.retry = retry or RetryPolicy()
        self._s3: Any = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, retry: RetryPolicy | None = None) -> R2Uploader:
        """An uploader configured from the environment (see :meth:`R2Settings.from_env`)."""
        return cls(R2Settings.from_env(environ), retry=retry)

    def upload_glb(self, glb: bytes, uid: str) -> UploadedObject:
        """Store ``glb`` as ``hunyuan3d-21-<uid>.glb``; return its key and presigned URL.

        Transient failures (connection errors, timeouts, 5xx, throttling) are retried. Raises
        ``UploadError`` with a redacted message when the store refuses or stays unreachable.
        """
        key = object_key(uid)
        s3 = self._client()
        where = f"bucket {self.settings.bucket!r} at {self.settings.endpoint_url}"

        def put() -> None:
            s3.put_object(Bucket=self.settings.bucket, Key=key, Body=glb, ContentType=GLB_CONTENT_TYPE)

        try:
            call_with_retries(put, is_transient=is_transient_s3_error, policy=self.retry,
                              what=f"request {uid}: upload of {key} to {where}")
            url = s3.generate_presigned_url(
                "get_object", Params={"Bucket": self.settings.bucket, "Key": key}, ExpiresIn=self.settings.url_expiry_s
            )
        except Exception as error:
            tries = gave_up_note(self.retry) if is_transient_s3_error(error) else ""
            raise UploadError(redact(f"upload of {key} to {where} failed: {_describe_s3_error(error)}{tries}")) from None
        logger.info("request %s: stored %d bytes as %s in %s", uid, len(glb), key, redact(where))
        return UploadedObject(key=key, download_url=url, expires_in_s=self.settings.url_expiry_s)

    def _client(self) -> Any:
        if self._s3 is None:
            import boto3
            from botocore.config import Config

            config = Config(
                region_name=R2_REGION,
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                retries={"total_max_attempts": 1},  # retries are ours, with the policy's backoff
                connect_timeout=S3_CONNECT_TIMEOUT_S,
                read_timeout=S3_READ_TIMEOUT_S,
                # only what every S3-compatible store understands (no default CRC trailers)
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            )
            self._s3 = boto3.session.Session().client(
                "s3",
                endpoint_url=self.settings.endpoint_url,
                aws_access_key_id=self.settings.access_key,
                aws_secret_access_key=self.settings.secret_key,
                config=config,
            )
        return self._s3


def is_transient_s3_error(error: BaseException) -> bool:
    """Connection failures, timeouts, HTTP 5xx and 429, and throttling codes are transient."""
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return status >= 500 or status == 429 or code in TRANSIENT_S3_ERROR_CODES
    return isinstance(error, (ConnectionError, HTTPClientError))


def _describe_s3_error(error: BaseException) -> str:
    from botocore.exceptions import ClientError

    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return f"{details.get('Code', 'error')} (HTTP {status}): {details.get('Message', '')}".rstrip(": ")
    return describe_exception(error)
