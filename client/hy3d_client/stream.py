"""One request to the streaming model ``hy3d_stream`` over gRPC: live progress, and cancel on the server.

The server sends progress responses (``STAGE``, ``PROGRESS``) and then the final one with the GLB; see
docs/streaming.md. Cancelling (the ``cancel`` token is set, or the caller is interrupted, e.g. Ctrl-C)
cancels the stream with ``stop_stream(cancel_requests=True)``: the server stops the work at its next step
boundary. A stream is never resent: it may already be running on the server.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .contract import PROGRESS_OUTPUT, STAGE_OUTPUT, STREAM_MODEL
from .errors import ConfigurationError, Hy3DError, ServerError
from .request import OUTPUT_NAMES, GenerationResult, InferenceRequest
from .retry import describe_exception
from .settings import TritonSettings

logger = logging.getLogger(__name__)

#: Seconds between two looks at the cancel token while waiting for the next response.
CANCEL_POLL_INTERVAL_S = 0.1
#: Outputs asked of ``hy3d_stream``.
STREAM_OUTPUT_NAMES = (STAGE_OUTPUT, PROGRESS_OUTPUT, *OUTPUT_NAMES)


@dataclass(frozen=True)
class Progress:
    """One progress report: the phase now running (e.g. ``shape:denoise``), the overall fraction in
    [0, 1] (never decreasing within a request) and the seconds since the request was sent."""

    stage: str
    fraction: float
    elapsed_s: float


#: What ``progress=`` takes: called in the caller's thread for every progress response.
ProgressCallback = Callable[[Progress], None]


class CancelToken(Protocol):
    """Anything with ``is_set()``, e.g. ``threading.Event``: set it to cancel the request."""

    def is_set(self) -> bool: ...


class GenerationCancelledError(Hy3DError):
    """The caller cancelled the request (token set); it was cancelled on the server too."""


def stream_generate(settings: TritonSettings, request: InferenceRequest, *, request_id: str,
                    progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> GenerationResult:
    """Run ``request`` on ``hy3d_stream`` at ``settings.url``; report progress; return the final result.

    Raises ``ConfigurationError`` unless the protocol is gRPC, ``GenerationCancelledError`` when ``cancel`` is
    set, ``ServerError`` with the server's message on an error response, a broken stream or after
    ``settings.timeout_s`` seconds without the final response. ``KeyboardInterrupt`` cancels the request
    on the server and propagates.
    """
    if settings.protocol != "grpc":
        raise ConfigurationError("protocol", "progress and cancel need gRPC streaming (hy3d_stream); "
                                             "HTTP gets the plain ensemble without progress")
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    where = f"{STREAM_MODEL} at {settings.url} (grpc stream)"
    responses: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client = grpcclient.InferenceServerClient(settings.url, ssl=settings.ssl)
    started = time.monotonic()
    finished = False
    try:
        client.start_stream(callback=lambda result, error: responses.put((result, error)))
        client.async_stream_infer(
            STREAM_MODEL, request.triton_inputs(grpcclient), request_id=request_id,
            outputs=[grpcclient.InferRequestedOutput(name) for name in STREAM_OUTPUT_NAMES],
        )
        logger.info("request %s: streaming from %s", request_id or "-", where)
        while True:
            elapsed_s = time.monotonic() - started
            if cancel is not None and cancel.is_set():
                raise GenerationCancelledError(f"request {request_id} cancelled after {elapsed_s:.1f} s")
            if elapsed_s > settings.timeout_s:
                raise ServerError(f"Triton {where} sent no final response within {settings.timeout_s:g} s; "
                                  "the request was cancelled on the server", status="timeout")
            try:
                result, error = responses.get(timeout=CANCEL_POLL_INTERVAL_S)
            except queue.Empty:
                continue
            if error is not None:
                finished = True  # the server ended the stream with this error
                raise _server_error(where, error, InferenceServerException)
            outputs = {name: result.as_numpy(name) for name in STREAM_OUTPUT_NAMES}
            if outputs[OUTPUT_NAMES[0]] is not None:
                finished = True
                generation = GenerationResult.from_outputs(outputs)
                logger.info("request %s: %d-byte GLB from %s in %.1f s", request_id or "-", len(generation.glb),
                            where, time.monotonic() - started)
                return generation
            if progress is not None and outputs[STAGE_OUTPUT] is not None and outputs[PROGRESS_OUTPUT] is not None:
                stage = outputs[STAGE_OUTPUT].reshape(-1)[0]
                progress(Progress(stage.decode("utf-8", "replace") if isinstance(stage, bytes) else str(stage),
                                  float(outputs[PROGRESS_OUTPUT].reshape(-1)[0]), time.monotonic() - started))
    except ValueError as error:
        raise ServerError(f"Triton {where} sent a malformed answer: {error}") from None
    except InferenceServerException as error:
        raise _server_error(where, error, InferenceServerException) from None
    except OSError as error:
        raise ServerError(f"cannot reach Triton {where}: {describe_exception(error)}",
                          status=type(error).__name__, transient=True) from None
    finally:
        _close(client, cancel_requests=not finished, request_id=request_id)


def _server_error(where: str, error: Any, exception_type: type) -> ServerError:
    if isinstance(error, exception_type):
        status = str(error.status() or "")
        message = error.message() or describe_exception(error)
    else:
        status, message = type(error).__name__, describe_exception(error)
    return ServerError(f"Triton {where} failed [{status}]: {message}", status=status,
                       transient=status == "StatusCode.UNAVAILABLE")


def _close(client: Any, *, cancel_requests: bool, request_id: str) -> None:
    """End the stream; with ``cancel_requests`` the server cancels the request still running."""
    try:
        client.stop_stream(cancel_requests=cancel_requests)
        if cancel_requests:
            logger.warning("request %s: cancelled on the server", request_id or "-")
    finally:
        client.close()
