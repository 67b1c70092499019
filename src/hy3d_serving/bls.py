"""Calling a stage model from another Python model (Triton's BLS): one request, its outputs or a StageError.

Used by ``hy3d_stream`` and ``hy3d_texture``, which reuse the stage models (one copy of the weights).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import ErrorKind


class StageError(Exception):
    """A stage answered with an error; ``kind`` is its status, the message the stage's own."""

    def __init__(self, kind: ErrorKind, message: str):
        super().__init__(message)
        self.kind = kind


def _pb_utils() -> Any:
    import triton_python_backend_utils

    return triton_python_backend_utils


def triton_error(pb_utils: Any, kind: ErrorKind, message: str) -> Any:
    """The ``pb_utils.TritonError`` carrying ``message`` with the status code of ``kind``."""
    code = getattr(pb_utils.TritonError, kind.value, None)
    return pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)


def error_kind(pb_utils: Any, error: Any) -> ErrorKind:
    """The :class:`ErrorKind` of a ``TritonError`` answered by a stage (INTERNAL when its code is unknown)."""
    code = error.code() if hasattr(error, "code") else None
    for kind in ErrorKind:
        if code is not None and code == getattr(pb_utils.TritonError, kind.value, None):
            return kind
    return ErrorKind.INTERNAL


def call_stage(model: str, inputs: dict[str, np.ndarray], output_names: Sequence[str],
               request_id: str) -> dict[str, np.ndarray]:
    """Run ``model`` on ``inputs`` through BLS and return its ``output_names`` by name.

    Raises :class:`StageError` with the stage's status and message, or INTERNAL naming an output the
    answer lacks (e.g. an error response replayed by a response cache as an empty success).
    """
    pb_utils = _pb_utils()
    request = pb_utils.InferenceRequest(
        model_name=model, inputs=[pb_utils.Tensor(name, array) for name, array in inputs.items()],
        requested_output_names=list(output_names), request_id=request_id,
    )
    response = request.exec()
    if response.has_error():
        error = response.error()
        raise StageError(error_kind(pb_utils, error), error.message())
    outputs = {}
    for name in output_names:
        tensor = pb_utils.get_output_tensor_by_name(response, name)
        if tensor is None:
            raise StageError(ErrorKind.INTERNAL, f"{model} answered without its output {name}")
        outputs[name] = tensor.as_numpy()
    return outputs
