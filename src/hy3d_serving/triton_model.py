"""The part every ``model_repository/*/1/model.py`` shares: the Python backend's request loop.

A stage subclasses :class:`StageModel`, names itself, loads its engine in :meth:`StageModel.load` and
maps inputs to outputs in :meth:`StageModel.infer`. This class turns that into exactly one response per
request: outputs, or an error that names the stage and the cause (invalid inputs -> INVALID_ARG, a
cancelled request -> CANCELLED, anything else -> INTERNAL). Each request is timed, and every log line of its
work carries its id (the client's request id, which the ensemble passes to every step, or a generated one).

``infer`` gets a step callback (:class:`~hy3d_serving.progress.StepMonitor`) to hand to the engines: it
stops the work at the next step boundary when the client went away (``request.is_cancelled()``) or the
stream was cancelled, sends each step to the request's progress channel when ``hy3d_stream`` gave one, and
records the phase durations in the stage's metrics.
"""

from __future__ import annotations

import inspect
import json
import logging
import uuid
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from .bls import triton_error
from .errors import ErrorKind, RequestCancelled, error_reply
from .logs import install_triton_logging, request_context, timed
from .metrics import StageMetrics
from .progress import PROGRESS_CHANNEL_INPUT, ProgressReporter, StepCallback, StepMonitor, check_channel_name
from .settings import model_parameters
from .stage_config import StageConfig
from .tensors import InputGetter, read_text

logger = logging.getLogger("hy3d_serving.stage")

#: Length of the request id generated when the client sent none.
GENERATED_REQUEST_ID_CHARS = 12


def _pb_utils() -> Any:
    import triton_python_backend_utils

    return triton_python_backend_utils


class StageModel(ABC):
    """Base of the ``TritonPythonModel`` classes of this repository."""

    #: Triton model name of the stage, used in logs and error messages.
    stage: ClassVar[str]
    #: Name of the engine the instance runs, published as a metric once loaded (set by ``load``).
    engine_name: str | None = None

    def initialize(self, args: dict[str, str]) -> None:
        """Read the settings and load the engine once for this model instance (Triton calls this)."""
        pb_utils = _pb_utils()
        install_triton_logging(pb_utils.Logger)
        model_config = json.loads(args["model_config"])
        self.config = StageConfig.resolve(
            model_parameters(model_config),
            instance_kind=args.get("model_instance_kind", "CPU"),
            instance_device_id=int(args.get("model_instance_device_id") or 0),
        )
        with request_context(self.stage), timed(logger, f"loading {args.get('model_instance_name', '?')}"):
            self.load(self.config)
        self.metrics = StageMetrics(pb_utils, self.stage)
        if self.engine_name:
            self.metrics.set_engine(self.engine_name)
        self._infer_takes_callback = "callback" in inspect.signature(self.infer).parameters

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request, in order, errors included (Triton calls this)."""
        pb_utils = _pb_utils()
        return [self._respond(pb_utils, request) for request in requests]

    def finalize(self) -> None:
        """Log the unload (Triton calls this on shutdown)."""
        with request_context(self.stage):
            logger.info("unloading")

    @abstractmethod
    def load(self, config: StageConfig) -> None:
        """Load what the stage needs (engines, weights) for ``config``."""

    @abstractmethod
    def infer(self, get: InputGetter, callback: StepCallback | None = None) -> dict[str, np.ndarray]:
        """Map the request's inputs (read through ``get``) to the output tensors, by name; pass
        ``callback`` to the engines (it raises ``RequestCancelled`` at a step boundary)."""

    def _respond(self, pb_utils: Any, request: Any) -> Any:
        request_id = request.request_id() or uuid.uuid4().hex[:GENERATED_REQUEST_ID_CHARS]

        def get(name: str) -> np.ndarray | None:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            return None if tensor is None else tensor.as_numpy()

        with request_context(self.stage, request_id):
            reporter = None
            monitor = None
            try:
                with timed(logger, "request"):
                    if get(PROGRESS_CHANNEL_INPUT) is not None:
                        reporter = ProgressReporter(check_channel_name(read_text(get, PROGRESS_CHANNEL_INPUT)))
                    monitor = StepMonitor(is_cancelled=getattr(request, "is_cancelled", None), reporter=reporter,
                                          observe_phase=self.metrics.observe_phase)
                    if monitor.cancelled():  # abandoned while it waited in the queue
                        raise RequestCancelled("the start of the stage")
                    outputs = self.infer(get, callback=monitor) if self._infer_takes_callback else self.infer(get)
                return pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor(name, value) for name, value in outputs.items()]
                )
            except Exception as error:  # one response per request: every failure becomes an error response
                reply = error_reply(self.stage, error)
                if reply.kind is ErrorKind.INVALID_ARGUMENT:
                    logger.warning("rejected: %s", reply.message)
                elif reply.kind is ErrorKind.CANCELLED:
                    logger.warning("cancelled by the client at %s; the stage is free for the next request",
                                   getattr(error, "where", "") or "?")
                    self.metrics.count_cancellation(monitor.last_step.split(" ")[0] if monitor else "")
                else:
                    logger.exception("failed: %s", reply.message)
                return pb_utils.InferenceResponse(error=triton_error(pb_utils, reply.kind, reply.message))
            finally:
                if reporter is not None:
                    reporter.close()
