"""The part every ``model_repository/*/1/model.py`` shares: the Python backend's request loop.

A stage subclasses :class:`StageModel`, names itself, loads its engine in :meth:`StageModel.load` and
maps inputs to outputs in :meth:`StageModel.infer`. This class turns that into exactly one response per
request: outputs, or an error that names the stage and the cause (invalid inputs -> INVALID_ARG,
anything else -> INTERNAL). Each request is timed, and every log line of its work carries its id (the
client's request id, which the ensemble passes to every step, or a generated one).
"""

from __future__ import annotations

import json
import logging
import uuid
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from .errors import ErrorKind, error_reply
from .logs import install_triton_logging, request_context, timed
from .settings import model_parameters
from .stage_config import StageConfig
from .tensors import InputGetter

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
    def infer(self, get: InputGetter) -> dict[str, np.ndarray]:
        """Map the request's inputs (read through ``get``) to the output tensors, by name."""

    def _respond(self, pb_utils: Any, request: Any) -> Any:
        request_id = request.request_id() or uuid.uuid4().hex[:GENERATED_REQUEST_ID_CHARS]

        def get(name: str) -> np.ndarray | None:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            return None if tensor is None else tensor.as_numpy()

        with request_context(self.stage, request_id):
            try:
                with timed(logger, "request"):
                    outputs = self.infer(get)
                return pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor(name, value) for name, value in outputs.items()]
                )
            except Exception as error:  # one response per request: every failure becomes an error response
                reply = error_reply(self.stage, error)
                if reply.kind is ErrorKind.INVALID_ARGUMENT:
                    logger.warning("rejected: %s", reply.message)
                else:
                    logger.exception("failed: %s", reply.message)
                return pb_utils.InferenceResponse(error=_triton_error(pb_utils, reply.kind, reply.message))


def _triton_error(pb_utils: Any, kind: ErrorKind, message: str) -> Any:
    code = getattr(pb_utils.TritonError, kind.value, None)
    return pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)
