"""One inference call to Triton over HTTP or gRPC with the official ``tritonclient``, with retries.

Transient failures are retried (see :mod:`hy3d_client.retry`): connection refused or reset, timeouts,
gRPC ``UNAVAILABLE`` / ``DEADLINE_EXCEEDED`` and HTTP 502/503/504. Everything else (a model error,
an unknown model, a refused input) fails at once. Failures surface as ``ServerError`` carrying the
server's own message.
"""

from __future__ import annotations

import importlib
import logging
import time
from types import ModuleType

from .errors import ServerError
from .request import OUTPUT_NAMES, GenerationResult, InferenceRequest, requested_outputs
from .retry import RetryPolicy, call_with_retries, describe_exception, gave_up_note
from .settings import TritonSettings

logger = logging.getLogger(__name__)

#: gRPC statuses worth another attempt.
TRANSIENT_GRPC_STATUSES = frozenset({"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED"})
#: HTTP statuses worth another attempt (a proxy or load balancer in front of a restarting server).
TRANSIENT_HTTP_STATUSES = frozenset({"502", "503", "504"})
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
        """Whether ``error`` is a failure another attempt may not meet (network, timeout, unavailable)."""
        from tritonclient.utils import InferenceServerException

        if isinstance(error, InferenceServerException):
            status = str(error.status() or "")
            return status in TRANSIENT_GRPC_STATUSES or status in TRANSIENT_HTTP_STATUSES
        return isinstance(error, (ConnectionError, TimeoutError, *_connection_closed_types()))


def _connection_closed_types() -> tuple[type[BaseException], ...]:
    """geventhttpclient's exception for a connection the server closed mid-answer (HTTP only)."""
    try:
        from geventhttpclient.response import HTTPConnectionClosed
    except ImportError:  # the HTTP extra of tritonclient is not installed
        return ()
    return (HTTPConnectionClosed,)
