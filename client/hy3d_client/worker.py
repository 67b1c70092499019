"""The JSON job handler of the serverless worker we replace: same input, same output.

Input: ``{"image": <base64>, "remove_background": true, "texture": true, "seed": 1234,
"octree_resolution": 256, "num_inference_steps": 5, "guidance_scale": 5.0, "face_count": 40000}``
(every key but ``image`` optional, defaults from the contract). A job with a ``mesh`` key (base64 of a
GLB, OBJ or PLY file) textures that mesh instead (model ``hy3d_texture``); it may carry only
``remove_background``, ``seed``, ``face_count`` and ``texture_format`` besides ``image``.
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

from .contract import (
    IMAGE_KEY,
    MESH_KEY,
    PARAMETERS_BY_KEY,
    PARAMETERS_BY_NAME,
    TEXTURE_MODEL_PARAMETERS,
    ContractError,
    validate_parameters,
)
from .errors import Hy3DError
from .images import decode_base64_image
from .meshes import decode_base64_mesh
from .r2 import R2Settings, R2Uploader
from .redaction import redact
from .request import GenerationResult, InferenceRequest, TextureRequest
from .retry import RetryPolicy, describe_exception
from .sdk import Hy3DClient
from .stream import CancelToken, Progress, ProgressCallback

logger = logging.getLogger(__name__)

#: Key under which the serverless platform wraps a job (``{"id": ..., "input": {...}}``).
JOB_WRAPPER_KEY = "input"
#: Key of the platform's job id in that envelope (what ``runpod.serverless.progress_update`` needs).
JOB_ID_KEY = "id"
#: Keys a job may carry.
JOB_KEYS = (IMAGE_KEY, *PARAMETERS_BY_KEY, MESH_KEY)
#: Parameter keys a job with a ``mesh`` may carry.
TEXTURE_JOB_PARAMETER_KEYS = tuple(PARAMETERS_BY_NAME[name].key for name in TEXTURE_MODEL_PARAMETERS)


def parse_job(job: Any) -> InferenceRequest | TextureRequest:
    """Validate a job dict and decode its image (and mesh). Raises ``ContractError`` naming the bad key.

    A job with a ``mesh`` becomes a :class:`TextureRequest` for ``hy3d_texture``.
    """
    if not isinstance(job, Mapping):
        raise ContractError("job", f"expected a JSON object with an {IMAGE_KEY!r} key, got {type(job).__name__}")
    unknown = sorted(str(key) for key in job if key not in JOB_KEYS)
    if unknown:
        raise ContractError(unknown[0], f"unknown key; allowed: {', '.join(JOB_KEYS)}")
    if job.get(IMAGE_KEY) is None:
        raise ContractError(IMAGE_KEY, "required: the input image as a base64 string (PNG, JPEG, WebP...)")
    parameters = {key: value for key, value in job.items() if key not in (IMAGE_KEY, MESH_KEY)}
    if job.get(MESH_KEY) is not None:
        return _parse_texture_job(job, parameters)
    validate_parameters(parameters)  # cheap checks before the image is decoded
    return InferenceRequest.build(decode_base64_image(job[IMAGE_KEY], IMAGE_KEY), parameters)


def handle(job: Any, *, client: Hy3DClient | None = None, uploader: R2Uploader | None = None,
           progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> dict[str, Any]:
    """Run one job end to end: validate, generate on Triton, upload the GLB, presign its URL.

    ``client`` and ``uploader`` default to ones configured from the environment. With ``progress`` or
    ``cancel`` a generation job streams from ``hy3d_stream`` over gRPC (see ``Hy3DClient.generate``;
    over HTTP it runs on the ensemble without progress). Never raises: every failure becomes
    ``{"error": message}`` with credentials redacted (a ``KeyboardInterrupt`` cancels on the server and
    propagates).
    """
    uid = str(uuid.uuid4())
    try:
        request = parse_job(job)
        uploader = uploader or _uploader_for(R2Settings.from_env(), RetryPolicy.from_env())
        client = client or Hy3DClient()
        result = _send(client, request, uid, progress, cancel)
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


def _parse_texture_job(job: Mapping[str, Any], parameters: dict[str, Any]) -> TextureRequest:
    """A job with a mesh: only the parameters of ``hy3d_texture``, then the mesh, then the image."""
    other = sorted(key for key in parameters if key not in TEXTURE_JOB_PARAMETER_KEYS)
    if other:
        raise ContractError(other[0], f"not a parameter of a job with a {MESH_KEY!r} (texturing a mesh); "
                                      f"allowed: {', '.join(TEXTURE_JOB_PARAMETER_KEYS)}")
    validate_parameters(parameters, names=TEXTURE_MODEL_PARAMETERS)
    mesh = decode_base64_mesh(job[MESH_KEY], MESH_KEY)
    return TextureRequest.build(mesh, decode_base64_image(job[IMAGE_KEY], IMAGE_KEY), parameters)


def _send(client: Hy3DClient, request: InferenceRequest | TextureRequest, uid: str,
          progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> GenerationResult:
    if isinstance(request, TextureRequest):
        return client.send_texture(request, request_id=uid)
    if client.settings.protocol != "grpc":  # streaming is gRPC-only: HTTP runs the plain ensemble
        progress = cancel = None
    return client.send(request, request_id=uid, progress=progress, cancel=cancel)


def worker_fn(input_data: Any) -> dict[str, Any]:
    """Drop-in handler for the serverless platform: takes the job, bare or wrapped as ``{"input": job}``."""
    return handle(unwrap_job(input_data), progress=platform_progress(input_data))


def platform_progress(input_data: Any) -> ProgressCallback | None:
    """A progress callback forwarding to ``runpod.serverless.progress_update(job, ...)`` when that SDK is
    importable and ``input_data`` is the platform's job (with an ``id``); None otherwise.

    It sends ``{"stage": ..., "percent": ...}`` only when the stage or the whole percent changes.
    """
    try:
        from runpod.serverless import progress_update
    except ImportError:
        return None
    if not (isinstance(input_data, Mapping) and JOB_ID_KEY in input_data):
        return None
    last: list[tuple[str, int]] = []

    def forward(report: Progress) -> None:
        update = (report.stage, int(report.fraction * 100))
        if last and last[-1] == update:
            return
        last[:] = [update]
        try:
            progress_update(input_data, {"stage": update[0], "percent": update[1]})
        except Exception as error:  # progress is best effort: the job goes on
            logger.warning("progress update failed: %s", describe_exception(error))

    return forward


def unwrap_job(input_data: Any) -> Any:
    """The job inside the platform's ``{"id": ..., "input": job}`` envelope, or ``input_data`` itself."""
    if isinstance(input_data, Mapping) and isinstance(input_data.get(JOB_WRAPPER_KEY), Mapping):
        return input_data[JOB_WRAPPER_KEY]
    return input_data


@functools.lru_cache(maxsize=4)
def _uploader_for(settings: R2Settings, retry: RetryPolicy) -> R2Uploader:
    """One uploader (one boto3 client) per configuration, reused across jobs."""
    return R2Uploader(settings, retry=retry)
