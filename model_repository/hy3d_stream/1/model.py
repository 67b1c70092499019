"""Triton model ``hy3d_stream`` (decoupled): hy3d_ensemble's work with progress responses over gRPC streaming.

Orchestration lives in :mod:`hy3d_serving.stream`; this file connects it to the Python backend: one
thread per request, the stage models called through BLS, responses through the request's sender.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils
from hy3d_client import contract

from hy3d_serving.bls import call_stage, triton_error
from hy3d_serving.errors import ErrorKind
from hy3d_serving.logs import install_triton_logging, request_context, timed
from hy3d_serving.metrics import StageMetrics
from hy3d_serving.stream import progress_outputs, read_ensemble_steps, run_stream

logger = logging.getLogger("hy3d_serving.stream")

MODEL = contract.STREAM_MODEL
#: Stage calls that may run at once (across all streams); the stages queue beyond their instances.
MAX_CONCURRENT_STAGE_CALLS = 16
#: Seconds finalize waits for the streams still running.
FINALIZE_WAIT_S = 30.0


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        install_triton_logging(pb_utils.Logger)
        self.input_names = [entry["name"] for entry in json.loads(args["model_config"])["input"]]
        ensemble_config = Path(args["model_repository"]).parent / contract.ENSEMBLE_MODEL / "config.pbtxt"
        self.steps = read_ensemble_steps(ensemble_config)
        self.metrics = StageMetrics(pb_utils, MODEL)
        self.executor = ThreadPoolExecutor(MAX_CONCURRENT_STAGE_CALLS, thread_name_prefix="hy3d-stage-call")
        self.threads: set[threading.Thread] = set()
        with request_context(MODEL):
            logger.info("streaming the steps of %s: %s", ensemble_config, " -> ".join(s.model for s in self.steps))

    def execute(self, requests: list[Any]) -> None:
        for request in requests:
            thread = threading.Thread(target=self._serve, args=(request,), name="hy3d-stream", daemon=True)
            self.threads.add(thread)
            thread.start()
        return None

    def finalize(self) -> None:
        for thread in list(self.threads):
            thread.join(FINALIZE_WAIT_S)
        self.executor.shutdown(wait=False, cancel_futures=True)

    def _serve(self, request: Any) -> None:
        sender = request.get_response_sender()
        request_id = request.request_id() or uuid.uuid4().hex[:12]
        final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
        with request_context(MODEL, request_id):
            try:
                inputs = {}
                for name in self.input_names:
                    tensor = pb_utils.get_input_tensor_by_name(request, name)
                    if tensor is not None:
                        inputs[name] = tensor.as_numpy()

                def send_progress(phase: str, fraction: float) -> None:
                    sender.send(_response(progress_outputs(phase, fraction)))

                with timed(logger, "stream"):
                    outcome = run_stream(self.steps, inputs, request_id=request_id, call_stage=call_stage,
                                         send_progress=send_progress, is_cancelled=sender.is_cancelled,
                                         executor=self.executor)
                if outcome.outputs is not None:
                    sender.send(_response(outcome.outputs), flags=final)
                elif outcome.cancelled_at is not None:
                    logger.warning("cancelled by the client at %s; no further stage runs", outcome.cancelled_at)
                    self.metrics.count_cancellation(outcome.cancelled_phase)
                    sender.send(flags=final)
                else:
                    logger.warning("failed: %s", outcome.failure)
                    sender.send(_error_response(outcome.failure.kind, f"in model '{MODEL}', {outcome.failure}"),
                                flags=final)
            except Exception as error:  # the stream always ends, with one error naming where
                logger.exception("failed")
                try:
                    sender.send(_error_response(ErrorKind.INTERNAL, f"{MODEL} failed: {type(error).__name__}: "
                                                                    f"{error}"), flags=final)
                except Exception:
                    logger.exception("could not end the stream")
            finally:
                self.threads.discard(threading.current_thread())


def _response(outputs: dict[str, np.ndarray]) -> Any:
    return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(name, value) for name, value in outputs.items()])


def _error_response(kind: ErrorKind, message: str) -> Any:
    return pb_utils.InferenceResponse(error=triton_error(pb_utils, kind, message))
