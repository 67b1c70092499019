"""The JSON job handler of the serverless worker we replace: same input, same output.

Input: ``{"image": <base64>, "remove_background": true, "texture": true, "seed": 1234,
"octree_resolution": 256, "num_inference_steps": 5, "guidance_scale": 5.0, "face_count": 40000}``
(every key but ``image`` optional, defaults from the contract).
Output: ``{"download_url": ..., "textured": bool, "seed": int, "uid": str}`` or ``{"error": message}``.

A job is checked completely (keys, types, ranges, image) and the store's configuration is read
before Triton is called, so a bad job costs no inference; nothing is uploaded when inference fails.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from .contract import IMAGE_KEY, PARAMETERS_BY_KEY, ContractError, validate_parameters
from .errors import Hy3DError
from .images import decode_base64_image
from .r2 import R2Settings, R2Uploader
from .redaction import redact
from .request import InferenceRequest
from .retry import RetryPolicy, describe_exception
from .sdk import Hy3DClient

logger = logging.getLogger(__name__)

#: Key under which the serverless platform wraps a job (``{"id": ..., "input": {...}}``).
JOB_WRAPPER_KEY = "input"
#: Keys a job may carry.
JOB_KEYS = (IMAGE_KEY, *PARAMETERS_BY_KEY)


def parse_job(job: Any) -> InferenceRequest:
    """Validate a job dict and decode its image. Raises ``ContractError`` naming the bad key."""
    if not isinstance(job, Mapping):
        raise ContractError("job", f"expected a JSON object with an {IMAGE_KEY!r} key, got {type(job).__name__}")
    unknown = sorted(str(key) for key in job if key not in JOB_KEYS)
    if unknown:
        raise ContractError(unknown[0], f"unknown key; allowed: {', '.join(JOB_KEYS)}")
    if job.get(IMAGE_KEY) is None:
        raise ContractError(IMAGE_KEY, "required: the input image as a base64 string (PNG, JPEG, WebP...)")
    parameters = {key: value for key, value in job.items() if key != IMAGE_KEY}
    validate_parameters(parameters)  # cheap checks before the image is decoded
    return InferenceRequest.build(decode_base64_image(job[IMAGE_KEY], IMAGE_KEY), parameters)


def handle(job: Any, *, client: Hy3DClient | None = None, uploader: R2Uploader | None = None) -> dict[str, Any]:
    """Run one job end to end: validate, generate on Triton, upload the GLB, presign its URL.

    ``client`` and ``uploader`` default to ones configured from the environment. Never raises:
    every failure becomes ``{"error": message}`` with credentials redacted.
    """
    uid = str(uuid.uuid4())
    try:
        request = parse_job(job)
        uploader = uploader or _uploader_for(R2Settings.from_env(), RetryPolicy.from_env())
        client = client or Hy3DClient()
        result = client.send(request, request_id=uid)
        uploaded = uploader.upload_glb(result.glb, uid)
    except (ContractError, Hy3DError) as error:
        message = redact(str(error))
        logger.warning("request %s: %s", uid, message)
        return {"error": message}
    except Exception as error:  # a bug: still one answer per job, with the cause named
        logger.exception("request %s: unexpected failure", uid)
        return {"error": redact(f"internal error: {describe_exception(error)}")}
    logger.info("request %s: done (textured=%s, seed=%d, engine=%s)", uid, result.textured, result.seed, result.engine)
    return {"download_url": uploaded.download_url, "textured": result.textured, "seed": result.seed, "uid": uid}


def worker_fn(input_data: Any) -> dict[str, Any]:
    """Drop-in handler for the serverless platform: takes the job, bare or wrapped as ``{"input": job}``."""
    return handle(unwrap_job(input_data))


def unwrap_job(input_data: Any) -> Any:
    """The job inside the platform's ``{"id": ..., "input": job}`` envelope, or ``input_data`` itself."""
    if isinstance(input_data, Mapping) and isinstance(input_data.get(JOB_WRAPPER_KEY), Mapping):
        return input_data[JOB_WRAPPER_KEY]
    return input_data


@functools.lru_cache(maxsize=4)
def _uploader_for(settings: R2Settings, retry: RetryPolicy) -> R2Uploader:
    """One uploader (one boto3 client) per configuration, reused across jobs."""
    return R2Uploader(settings, retry=retry)
