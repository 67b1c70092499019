"""A stand-in for ``triton_python_backend_utils`` (only importable inside Triton's Python stub).

It implements the few names the stages use, so ``model_repository/*/1/model.py`` can be driven in-process.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np

REPOSITORY = Path(__file__).resolve().parents[2] / "model_repository"


class Tensor:
    def __init__(self, name: str, array: np.ndarray):
        self._name = name
        self._array = array

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class TritonError:
    INVALID_ARG = "INVALID_ARG"
    INTERNAL = "INTERNAL"

    def __init__(self, message: str, code: str | None = None):
        self._message = message
        self._code = code

    def message(self) -> str:
        return self._message

    def code(self) -> str | None:
        return self._code


class InferenceResponse:
    def __init__(self, output_tensors: list[Tensor] | None = None, error: TritonError | None = None):
        self.outputs = {tensor.name(): tensor.as_numpy() for tensor in output_tensors or []}
        self.error = error


class InferenceRequest:
    def __init__(self, inputs: dict[str, np.ndarray], request_id: str = ""):
        self.inputs = inputs
        self._request_id = request_id

    def request_id(self) -> str:
        return self._request_id


class Logger:
    lines: list[tuple[str, str]] = []

    @classmethod
    def log_info(cls, message: str) -> None:
        cls.lines.append(("info", message))

    @classmethod
    def log_warn(cls, message: str) -> None:
        cls.lines.append(("warn", message))

    @classmethod
    def log_error(cls, message: str) -> None:
        cls.lines.append(("error", message))

    @classmethod
    def log_verbose(cls, message: str) -> None:
        cls.lines.append(("verbose", message))


def get_input_tensor_by_name(request: InferenceRequest, name: str) -> Tensor | None:
    return Tensor(name, request.inputs[name]) if name in request.inputs else None


def as_module() -> types.ModuleType:
    """This file as the module ``triton_python_backend_utils``."""
    return sys.modules[__name__]


def load_model(stage: str) -> Any:
    """Import ``model_repository/<stage>/1/model.py`` (put :func:`as_module` in sys.modules first)."""
    spec = importlib.util.spec_from_file_location(f"{stage}_model", REPOSITORY / stage / "1" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def model_args(stage: str, parameters: dict[str, str] | None = None) -> dict[str, str]:
    """The ``args`` Triton passes to ``initialize`` (only the keys the stages read)."""
    import json

    config = {"name": stage, "parameters": {k: {"string_value": v} for k, v in (parameters or {}).items()}}
    return {"model_config": json.dumps(config), "model_instance_kind": "CPU", "model_instance_device_id": "0",
            "model_instance_name": f"{stage}_0_0"}
