"""Cancellation (issue 10.2): a request whose client went away stops at the next step boundary.

Promises, without Triton: the step callback raises ``RequestCancelled`` naming the phase and step once the
request is cancelled (its own ``is_cancelled`` or a cancel on its progress channel); a stage turns that
into a CANCELLED reply naming the stage; the orchestrator starts no later stage after a cancel.
Through a real tritonserver: a direct stage call abandoned by its client (gRPC deadline) stops inside the
stage, and the log and the cancellation metric say where; an ensemble request abandoned during
``shape_dit`` never runs ``paint_pbr``, and the request queued behind it is served.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from hy3d_client import contract
from tritonclient.utils import InferenceServerException

from hy3d_serving.engines import BuiltinPaintEngine, BuiltinShapeEngine
from hy3d_serving.errors import ErrorKind, RequestCancelled, error_reply
from hy3d_serving.progress import ProgressListener, ProgressReporter, StepEvent, StepMonitor
from hy3d_serving.stage_config import StageConfig
from hy3d_serving.stages import make_shape, run_in_process
from hy3d_serving.stream import EnsembleStep, StageError, run_stream

from .test_ensemble import example_rgba

SMALL_SHAPE = {"seed": 3, "octree_resolution": 32, "num_inference_steps": 5, "guidance_scale": 5.0,
               "face_count": 1000}
#: A direct shape_dit call that takes seconds on the built-in engine (1M faces before post-processing).
SLOW_SHAPE_RESOLUTION = 512
#: Client deadline shorter than that call, seconds.
DEADLINE_S = 0.5


def wait_for(predicate, timeout_s: float = 120.0, interval_s: float = 0.2):
    """Poll ``predicate`` until it returns a true value (returned) or the timeout passes (AssertionError)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"not true within {timeout_s} s: {predicate}")


# ---------------------------------------------------------------------------------------------------------
# Without Triton
# ---------------------------------------------------------------------------------------------------------


def test_step_callback_raises_request_cancelled_naming_the_phase_and_step_once_cancelled():
    cancelled = threading.Event()
    monitor = StepMonitor(is_cancelled=cancelled.is_set)
    monitor("shape:denoise", 1, 5)
    cancelled.set()
    with pytest.raises(RequestCancelled) as caught:
        monitor("shape:denoise", 2, 5)
    assert caught.value.where == "shape:denoise 2/5"


def test_a_cancel_on_the_progress_channel_reaches_the_stage_at_its_next_step():
    listener = ProgressListener()
    reporter = ProgressReporter(listener.name)
    try:
        monitor = StepMonitor(reporter=reporter)
        monitor("paint:render", 1, 6)
        assert listener.receive(1.0) == [StepEvent("paint:render", 1, 6)]
        listener.cancel()
        time.sleep(0.05)  # the datagram is local; let it land
        with pytest.raises(RequestCancelled, match="paint:render 2/6"):
            monitor("paint:render", 2, 6)
    finally:
        reporter.close()
        listener.close()


def test_a_stage_whose_listener_is_gone_counts_as_cancelled():
    listener = ProgressListener()
    reporter = ProgressReporter(listener.name)
    listener.close()
    with pytest.raises(RequestCancelled):
        StepMonitor(reporter=reporter)("export", 0, 1)
    reporter.close()


def test_a_cancelled_stage_request_gets_a_cancelled_reply_naming_the_stage():
    reply = error_reply("shape_dit", RequestCancelled("shape:denoise 2/5"))
    assert reply.kind is ErrorKind.CANCELLED
    assert reply.message == "shape_dit: request cancelled at shape:denoise 2/5"


def test_the_stage_functions_stop_at_the_boundary_after_the_cancel():
    config = StageConfig.resolve({})
    seen: list[str] = []

    def cancel_at_postprocess(phase: str, done: int, total: int) -> None:
        seen.append(phase)
        if phase == "shape:postprocess":
            raise RequestCancelled(f"{phase} {done}/{total}")

    with pytest.raises(RequestCancelled, match="shape:postprocess 0/1"):
        make_shape(BuiltinShapeEngine(config), example_rgba(), SMALL_SHAPE, cancel_at_postprocess)
    assert seen[-1] == "shape:postprocess" and "export" not in seen


def test_every_phase_reports_its_end_in_process():
    config = StageConfig.resolve({})
    steps: list[tuple[str, int, int]] = []
    run_in_process(example_rgba(), {**SMALL_SHAPE, "texture": False},
                   remover=None, shape_engine=BuiltinShapeEngine(config), paint_engine=BuiltinPaintEngine(config),
                   callback=lambda phase, done, total: steps.append((phase, done, total)))
    ends = [phase for phase, done, total in steps if done == total]
    assert ends[0] == "preprocess" and ends[-1] == "export"
    assert "shape:postprocess" in ends
    order = [contract.PHASES.index(phase) for phase, _, _ in steps]
    assert order == sorted(order)


def test_the_orchestrator_starts_no_later_stage_after_a_cancel():
    cancelled = threading.Event()
    called: list[str] = []

    def call_stage(model, inputs, outputs, request_id):
        called.append(model)
        cancelled.set()  # the client gives up while the first stage runs
        raise StageError(ErrorKind.CANCELLED, f"{model}: request cancelled at preprocess 1/1")

    steps = [EnsembleStep("preprocess", {"IMAGE": "IMAGE"}, {"RGBA": "rgba"}),
             EnsembleStep("shape_dit", {"RGBA": "rgba"}, {"VERTICES": "vertices"})]
    with ThreadPoolExecutor(1) as executor:
        outcome = run_stream(steps, {"IMAGE": example_rgba()}, request_id="r1", call_stage=call_stage,
                             send_progress=lambda phase, fraction: None, is_cancelled=cancelled.is_set,
                             executor=executor)
    assert called == ["preprocess"]
    assert outcome.outputs is None and outcome.cancelled_at.startswith("preprocess")


def test_a_failed_stage_ends_the_stream_with_its_error_and_no_later_stage_runs():
    called: list[str] = []

    def call_stage(model, inputs, outputs, request_id):
        called.append(model)
        raise StageError(ErrorKind.INTERNAL, f"{model} failed: EngineError: no surface")

    steps = [EnsembleStep("shape_dit", {"IMAGE": "IMAGE"}, {"VERTICES": "vertices"}),
             EnsembleStep("paint_pbr", {"VERTICES": "vertices"}, {"GLB": "GLB"})]
    with ThreadPoolExecutor(1) as executor:
        outcome = run_stream(steps, {"IMAGE": example_rgba()}, request_id="r2", call_stage=call_stage,
                             send_progress=lambda phase, fraction: None, is_cancelled=lambda: False,
                             executor=executor)
    assert called == ["shape_dit"]
    assert outcome.outputs is None and outcome.cancelled_at is None
    assert outcome.failure.kind is ErrorKind.INTERNAL and str(outcome.failure) == "shape_dit failed: EngineError: no surface"


# ---------------------------------------------------------------------------------------------------------
# Through tritonserver
# ---------------------------------------------------------------------------------------------------------


def infer_with_deadline(url: str, model: str, inputs: dict[str, np.ndarray], request_id: str, deadline_s: float):
    client = grpcclient.InferenceServerClient(url)
    tensors = []
    for name, array in inputs.items():
        tensor = grpcclient.InferInput(name, list(array.shape), _triton_dtype(array))
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    try:
        with pytest.raises(InferenceServerException) as caught:
            client.infer(model, tensors, request_id=request_id, client_timeout=deadline_s)
        return caught.value
    finally:
        client.close()


def _triton_dtype(array: np.ndarray) -> str:
    return {np.uint8: "UINT8", np.int32: "INT32", np.int64: "INT64", np.bool_: "BOOL", np.float32: "FP32"}[
        array.dtype.type]


def metric_value(server, line_pattern: str) -> float:
    """Sum of the samples of the metrics page whose line matches ``line_pattern`` (0 when none)."""
    with urllib.request.urlopen(f"http://{server.metrics_url}/metrics", timeout=10) as page:
        text = page.read().decode()
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if not line.startswith("#") and re.search(line_pattern, line)]
    return sum(values)


def request_lines(server, request_id: str) -> list[str]:
    return [line for line in server.log_path.read_text(errors="replace").splitlines()
            if f"request={request_id}]" in line]


@pytest.mark.integration
def test_a_direct_stage_call_abandoned_by_its_client_stops_inside_the_stage(triton_server):
    before = metric_value(triton_server, r'^hy3d_cancelled_requests_total\{.*model="shape_dit"')
    error = infer_with_deadline(triton_server.grpc_url, "shape_dit",
                                {"RGBA": example_rgba(), "OCTREE_RESOLUTION": np.array([SLOW_SHAPE_RESOLUTION], np.int32),
                                 "SEED": np.array([101], np.int64)}, "abandoned-direct", DEADLINE_S)
    assert "DEADLINE_EXCEEDED" in str(error.status())
    line = wait_for(lambda: next((entry for entry in request_lines(triton_server, "abandoned-direct")
                                  if "cancelled by the client at shape:" in entry), None))
    assert re.search(r"cancelled by the client at shape:\w+ \d+/\d+", line)
    assert not any("mesh: " in entry for entry in request_lines(triton_server, "abandoned-direct"))
    wait_for(lambda: metric_value(triton_server, r'^hy3d_cancelled_requests_total\{.*model="shape_dit"') > before)


@pytest.mark.integration
def test_an_ensemble_request_abandoned_during_shape_never_runs_paint_and_the_next_one_is_served(triton_server):
    from .ensemble_client import generate

    image = example_rgba()
    slow = {"IMAGE": image, "OCTREE_RESOLUTION": np.array([SLOW_SHAPE_RESOLUTION], np.int32),
            "SEED": np.array([202], np.int64)}
    paint_before = metric_value(triton_server, r'^nv_inference_request_success\{.*model="paint_pbr"')
    infer_with_deadline(triton_server.grpc_url, contract.ENSEMBLE_MODEL, slow, "abandoned-ensemble", DEADLINE_S)
    queued = generate(triton_server.grpc_url, "grpc", image, {"octree_resolution": 48, "face_count": 1000,
                                                               "texture": False, "seed": 203})
    assert queued.glb
    shape_done = wait_for(lambda: any("request done" in entry and "[shape_dit" in entry
                                      for entry in request_lines(triton_server, "abandoned-ensemble")))
    assert shape_done
    assert not any("[paint_pbr" in entry for entry in request_lines(triton_server, "abandoned-ensemble"))
    # Only the queued request's paint step ran (untextured: paint_pbr only exports).
    assert metric_value(triton_server, r'^nv_inference_request_success\{.*model="paint_pbr"') == paint_before + 1
