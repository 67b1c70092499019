"""One inference call to Triton over HTTP or gRPC with the official ``tritonclient``, with retries.

Only a failure that cannot have reached a model is retried (see :mod:`hy3d_client.retry`), so that the
client never multiplies the load: a refused connection (HTTP ``ConnectionRefusedError``, gRPC
``UNAVAILABLE`` "failed to connect"), and Triton's own refusals before a model ran: ``UNAVAILABLE`` /
HTTP 503 (a stage queue over ``HY3D_MAX_QUEUE_SIZE``, a server that is not ready) and a model that has
no loaded version while the server drains or reloads a stage. A timeout, ``DEADLINE_EXCEEDED``, a
connection reset or closed mid-answer, a proxy's 502/504 and every model error are reported at once:
the request may be running. Failures surface as ``ServerError`` carrying the server's own message.
"""

from __future__ import annotations

import importlib
import logging
import socket
import time
from types import ModuleType

from .errors import ServerError
from .request import OUTPUT_NAMES, GenerationResult, InferenceRequest, requested_outputs
from .retry import RetryPolicy, call_with_retries, describe_exception, gave_up_note
from .settings import TritonSettings

logger = logging.getLogger(__name__)

#: gRPC status of a refusal (by the network or by Triton) that may mean "not sent to any model".
UNAVAILABLE_GRPC = "StatusCode.UNAVAILABLE"
#: HTTP status of Triton's UNAVAILABLE (queue full, not ready) and of a proxy without a live server.
UNAVAILABLE_HTTP = "503"
#: Parts of gRPC UNAVAILABLE messages that show the request never left the client or was refused before
#: any model ran (a broken connection mid-call, "Socket closed" after sending, is not among them).
NOT_SENT_MESSAGES = ("failed to connect", "connection refused", "dns resolution failed",
                     "exceeds maximum queue size", "server is not ready", "server not ready")
#: Triton's answer for a model of the repository that has no loaded version (drain, stage reload).
NO_LOADED_VERSION_MESSAGE = "has no available versions"
#: Triton's refusal of a request over a stage's queue bound; the client names the server setting.
QUEUE_FULL_MESSAGE = "Exceeds maximum queue size"
QUEUE_FULL_HINT = " (the server's HY3D_MAX_QUEUE_SIZE bound; try again later or on another server)"
_PROTOCOL_MODULES = {"grpc": "tritonclient.grpc", "http": "tritonclient.http"}


class TritonTransport:
    """Sends :class:`InferenceRequest` objects to the model named in ``settings``."""

    def __init__(self, settings: TritonSettings, retry: RetryPolicy | None = None):
        self.settings = settings
        self.retry = retry or RetryPolicy()

    def infer(self, request: InferenceRequest, request_id: str = "") -> GenerationResult:
        """Run ``request``; return the ensemble's outputs.

        Raises ``ServerError`` with the server's message when Triton answers with an error, when it
        cannot be reached after every attempt, or when its answer lacks an output.
        """
        module = importlib.import_module(_PROTOCOL_MODULES[self.settings.protocol])
        from tritonclient.utils import InferenceServerException

        inputs = request.triton_inputs(module)
        outputs = requested_outputs(module)
        where = f"{self.settings.model_name} at {self.settings.url} ({self.settings.protocol})"
        started = time.monotonic()
        logger.info("request %s: sending to %s", request_id or "-", where)

        def attempt() -> GenerationResult:
            client = self._connect(module)
            try:
                if self.settings.protocol == "grpc":
                    result = client.infer(
                        self.settings.model_name, inputs, outputs=outputs, request_id=request_id,
                        client_timeout=self.settings.timeout_s,
                    )
                else:
                    result = client.infer(self.settings.model_name, inputs, outputs=outputs, request_id=request_id)
                return GenerationResult.from_outputs({name: result.as_numpy(name) for name in OUTPUT_NAMES})
            finally:
                client.close()

        try:
            generation = call_with_retries(
                attempt, is_transient=self.is_transient, policy=self.retry,
                what=f"request {request_id or '-'}: inference on {where}",
            )
        except InferenceServerException as error:
            status = str(error.status() or "")
            transient = self.is_transient(error)
            message = error.message() or describe_exception(error)
            if QUEUE_FULL_MESSAGE.lower() in message.lower():
                message += QUEUE_FULL_HINT
            if transient:
                message += gave_up_note(self.retry)
            raise ServerError(f"Triton {where} failed [{status}]: {message}", status=status, transient=transient) from None
        except ValueError as error:
            raise ServerError(f"Triton {where} sent a malformed answer: {error}") from None
        except (OSError, *_connection_closed_types()) as error:
            transient = self.is_transient(error)
            tries = gave_up_note(self.retry) if transient else ""
            raise ServerError(
                f"cannot reach Triton {where}: {describe_exception(error)}{tries}",
                status=type(error).__name__, transient=transient,
            ) from None
        logger.info(
            "request %s: %d-byte GLB from %s in %.1f s (engine %s)",
            request_id or "-", len(generation.glb), where, time.monotonic() - started, generation.engine,
        )
        return generation

    def _connect(self, module: ModuleType):
        """A fresh client per attempt: a broken connection is never reused."""
        if self.settings.protocol == "grpc":
            return module.InferenceServerClient(self.settings.url, ssl=self.settings.ssl)
        return module.InferenceServerClient(
            self.settings.url,
            connection_timeout=self.settings.connect_timeout_s,
            network_timeout=self.settings.timeout_s,
            ssl=self.settings.ssl,
        )

    @staticmethod
    def is_transient(error: BaseException) -> bool:
        """Whether ``error`` certainly did not reach a model, so that another attempt is safe (see the module
        docstring); a timeout or a connection lost mid-call is not."""
        from tritonclient.utils import InferenceServerException

        if isinstance(error, InferenceServerException):
            status = str(error.status() or "")
            message = (error.message() or "").lower()
            if status == UNAVAILABLE_HTTP or NO_LOADED_VERSION_MESSAGE in message:
                return True
            return status == UNAVAILABLE_GRPC and any(part in message for part in NOT_SENT_MESSAGES)
        return isinstance(error, (ConnectionRefusedError, socket.gaierror))


def _connection_closed_types() -> tuple[type[BaseException], ...]:
    """geventhttpclient's exception for a connection the server closed mid-answer (HTTP only)."""
    try:
        from geventhttpclient.response import HTTPConnectionClosed
    except ImportError:  # the HTTP extra of tritonclient is not installed
        return ()
    return (HTTPConnectionClosed,)
