"""hy3d_stream (decoupled, gRPC streaming) through a real tritonserver with the built-in engines.

Promises: the model takes exactly hy3d_ensemble's inputs; one request gives progress responses (STAGE in
the stable phase names, in their order, at least one per phase; PROGRESS in [0, 1], never decreasing),
then one final response with GLB, TEXTURED, SEED_USED, ENGINE, PROGRESS = 1 and Triton's final flag; the
GLB is byte-identical to hy3d_ensemble's for the same inputs; a cancelled stream stops inside the running
stage (also when the client just drops the connection), the log and the cancellation metric say where,
and the server runs the next request; a bad input
gets one error response naming it and the stream ends; the client SDK reports progress and cancels on
the server; the CLI prints plain progress lines when stderr is not a terminal, and Ctrl-C exits 130.
"""

from __future__ import annotations

import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from google.protobuf import text_format
from hy3d_client import contract
from hy3d_client.sdk import Hy3DClient
from hy3d_client.stream import GenerationCancelledError
from tritonclient.grpc import model_config_pb2

from hy3d_serving.progress import UNTEXTURED_PHASES

from .ensemble_client import generate
from .test_cancel import metric_value, request_lines, wait_for
from .test_ensemble import EXAMPLE, example_rgba

pytestmark = pytest.mark.integration

REPOSITORY = Path(__file__).resolve().parents[2] / "model_repository"
#: Small, fast, textured: a 1000-face mesh keeps the texture stage to seconds.
SMALL = {"octree_resolution": 64, "face_count": 1000, "seed": 31}
#: A request long enough to be cancelled while its texture stage runs.
LONG = {"octree_resolution": 128, "face_count": 40000, "seed": 32}
OUTPUTS = (contract.STAGE_OUTPUT, contract.PROGRESS_OUTPUT, *(contract.GLB_OUTPUT, contract.TEXTURED_OUTPUT,
                                                               contract.SEED_OUTPUT, contract.ENGINE_OUTPUT))
#: Seconds to wait for one response of the stream.
RESPONSE_TIMEOUT_S = 600


def load_config(model: str) -> model_config_pb2.ModelConfig:
    config = model_config_pb2.ModelConfig()
    text_format.Parse((REPOSITORY / model / "config.pbtxt").read_text(), config)
    return config


def request_inputs(image: np.ndarray, parameters: dict) -> list:
    inputs = [grpcclient.InferInput(contract.IMAGE_INPUT, list(image.shape), "UINT8")]
    inputs[0].set_data_from_numpy(image)
    for key, value in parameters.items():
        parameter = contract.PARAMETERS_BY_KEY[key]
        tensor = grpcclient.InferInput(parameter.name, [1], parameter.triton_dtype)
        tensor.set_data_from_numpy(np.array([value], dtype=parameter.numpy_dtype))
        inputs.append(tensor)
    return inputs


class Stream:
    """One gRPC stream to hy3d_stream; ``responses`` collects ``(result, error)`` in arrival order."""

    def __init__(self, url: str):
        self.client = grpcclient.InferenceServerClient(url)
        self.queue: queue.Queue = queue.Queue()
        self.client.start_stream(callback=lambda result, error: self.queue.put((result, error)))

    def send(self, inputs: list, request_id: str) -> None:
        self.client.async_stream_infer(contract.STREAM_MODEL, inputs, request_id=request_id,
                                       outputs=[grpcclient.InferRequestedOutput(name) for name in OUTPUTS])

    def next(self):
        return self.queue.get(timeout=RESPONSE_TIMEOUT_S)

    def until_final(self) -> list:
        """Every response up to and including the final one (or the first error)."""
        responses = []
        while True:
            result, error = self.next()
            responses.append((result, error))
            if error is not None or result.get_response().parameters["triton_final_response"].bool_param:
                return responses

    def close(self, cancel: bool = False) -> None:
        self.client.stop_stream(cancel_requests=cancel)
        self.client.close()


def progress_of(result) -> tuple[str, float] | None:
    stage = result.as_numpy(contract.STAGE_OUTPUT)
    if stage is None:
        return None
    return stage[0].decode(), float(result.as_numpy(contract.PROGRESS_OUTPUT)[0])


@pytest.fixture(scope="module")
def textured_stream(triton_server):
    stream = Stream(triton_server.grpc_url)
    try:
        stream.send(request_inputs(example_rgba(), SMALL), "stream-textured")
        return stream.until_final()
    finally:
        stream.close()


def test_stream_takes_exactly_the_ensembles_inputs_and_is_decoupled():
    stream = load_config(contract.STREAM_MODEL)
    ensemble = load_config(contract.ENSEMBLE_MODEL)
    assert [text_format.MessageToString(entry) for entry in stream.input] == \
           [text_format.MessageToString(entry) for entry in ensemble.input]
    assert stream.model_transaction_policy.decoupled
    outputs = {entry.name: model_config_pb2.DataType.Name(entry.data_type) for entry in stream.output}
    assert outputs == {"STAGE": "TYPE_STRING", "PROGRESS": "TYPE_FP32", "GLB": "TYPE_STRING",
                       "TEXTURED": "TYPE_BOOL", "SEED_USED": "TYPE_INT64", "ENGINE": "TYPE_STRING"}


def test_progress_responses_come_in_phase_order_never_decreasing_then_one_final_response(textured_stream):
    assert all(error is None for _, error in textured_stream)
    *progress, final = [result for result, _ in textured_stream]
    reports = [progress_of(result) for result in progress]
    assert all(report is not None for report in reports)
    phases = [phase for phase, _ in reports]
    fractions = [fraction for _, fraction in reports]
    assert set(phases) == set(contract.PHASES)  # at least one response per phase
    assert [contract.PHASES.index(p) for p in phases] == sorted(contract.PHASES.index(p) for p in phases)
    assert all(0.0 <= f <= 1.0 for f in fractions) and fractions == sorted(fractions)
    for result in progress:
        assert not result.get_response().parameters["triton_final_response"].bool_param
        assert result.as_numpy(contract.GLB_OUTPUT) is None
    assert final.get_response().parameters["triton_final_response"].bool_param
    assert final.as_numpy(contract.PROGRESS_OUTPUT)[0] == 1.0
    assert final.as_numpy(contract.TEXTURED_OUTPUT)[0]
    assert final.as_numpy(contract.SEED_OUTPUT)[0] == SMALL["seed"]
    assert final.as_numpy(contract.ENGINE_OUTPUT)[0] == b"shape=builtin-silhouette;paint=builtin-projection"


def test_the_final_glb_is_byte_identical_to_the_ensembles(textured_stream, triton_server):
    final = textured_stream[-1][0]
    ensemble = generate(triton_server.grpc_url, "grpc", example_rgba(), SMALL)
    assert final.as_numpy(contract.GLB_OUTPUT)[0] == ensemble.glb


def test_an_untextured_request_reports_no_paint_phase(triton_server):
    reports: list = []
    result = Hy3DClient(triton_server.grpc_url, "grpc", timeout_s=RESPONSE_TIMEOUT_S).generate_result(
        example_rgba(), progress=reports.append, **{**SMALL, "texture": False, "seed": 33})
    assert not result.textured
    assert list(dict.fromkeys(report.stage for report in reports)) == list(UNTEXTURED_PHASES)
    assert [r.fraction for r in reports] == sorted(r.fraction for r in reports)
    assert result.glb == generate(triton_server.grpc_url, "grpc", example_rgba(),
                                  {**SMALL, "texture": False, "seed": 33}).glb


def test_a_bad_input_gets_one_error_response_naming_it_and_the_stream_ends(triton_server):
    stream = Stream(triton_server.grpc_url)
    try:
        stream.send(request_inputs(example_rgba(), {"octree_resolution": 100000}), "stream-bad")
        result, error = stream.next()
        assert result is None  # gRPC streaming carries the error's text, not its status code
        assert error.message() == ("in model 'hy3d_stream', preprocess: invalid input OCTREE_RESOLUTION: 100000 "
                                   "is out of range; expected an integer in [16, 512]")
    finally:
        stream.close()
    assert stream.queue.empty()  # nothing after the error


def test_cancelling_the_stream_stops_the_running_stage_and_the_next_request_runs(triton_server):
    before = metric_value(triton_server, r'^hy3d_cancelled_requests_total\{.*model="hy3d_stream"')
    stream = Stream(triton_server.grpc_url)
    stream.send(request_inputs(example_rgba(), LONG), "stream-cancelled")
    while True:  # cancel as soon as the texture stage reports
        result, error = stream.next()
        assert error is None
        if progress_of(result)[0].startswith("paint:"):
            break
    stream.close(cancel=True)
    stopped = wait_for(lambda: next((line for line in request_lines(triton_server, "stream-cancelled")
                                     if "[paint_pbr" in line and "cancelled by the client at" in line), None))
    assert "paint:" in stopped
    lines = request_lines(triton_server, "stream-cancelled")
    assert not any("[paint_pbr" in line and "GLB: " in line for line in lines)  # no export for nobody
    wait_for(lambda: any("[hy3d_stream" in line and "cancelled by the client at paint_pbr" in line
                         for line in request_lines(triton_server, "stream-cancelled")))
    assert metric_value(triton_server, r'^hy3d_cancelled_requests_total\{.*model="hy3d_stream"') == before + 1
    assert grpcclient.InferenceServerClient(triton_server.grpc_url).is_server_ready()
    after = Hy3DClient(triton_server.grpc_url, "grpc", timeout_s=RESPONSE_TIMEOUT_S).generate_result(
        example_rgba(), progress=lambda report: None, **{**SMALL, "texture": False, "seed": 34})
    assert after.glb


def test_the_sdk_cancel_token_cancels_on_the_server(triton_server):
    cancel = threading.Event()

    def on_progress(report) -> None:
        if report.stage.startswith("paint:"):
            cancel.set()

    client = Hy3DClient(triton_server.grpc_url, "grpc", timeout_s=RESPONSE_TIMEOUT_S)
    with pytest.raises(GenerationCancelledError):
        client.generate_result(EXAMPLE, request_id="sdk-cancelled", progress=on_progress, cancel=cancel,
                               **{**LONG, "seed": 35})
    wait_for(lambda: any("[hy3d_stream" in line and "cancelled by the client at paint_pbr" in line
                         for line in request_lines(triton_server, "sdk-cancelled")))


def test_the_cli_prints_plain_progress_lines_when_stderr_is_not_a_terminal(triton_server, tmp_path):
    from hy3d_client.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    out = tmp_path / "mug.glb"
    status = main(["generate", str(EXAMPLE), "--out", str(out), "--url", triton_server.grpc_url,
                   "--octree-resolution", "64", "--face-count", "1000", "--no-texture", "--seed", "36"],
                  stdout=stdout, stderr=stderr)
    assert status == 0, stderr.getvalue()
    lines = stderr.getvalue().splitlines()
    assert lines[0] == f"hy3d-client: generating on {triton_server.grpc_url} ..."
    assert any(line.startswith("hy3d-client: preprocess: ") for line in lines)
    assert "hy3d-client: export: 100% after " in stderr.getvalue()
    assert lines[-1].startswith(f"hy3d-client: generating on {triton_server.grpc_url}: done after ")
    assert "\r" not in stderr.getvalue() and "\x1b" not in stderr.getvalue()
    assert json.loads(stdout.getvalue())["bytes"] == out.stat().st_size

    quiet = io.StringIO()
    assert main(["generate", str(EXAMPLE), "--out", str(out), "--url", triton_server.grpc_url, "--quiet",
                 "--octree-resolution", "64", "--face-count", "1000", "--no-texture", "--seed", "36"],
                stdout=io.StringIO(), stderr=quiet) == 0
    assert quiet.getvalue() == ""


def test_ctrl_c_in_the_cli_cancels_on_the_server_and_exits_130(triton_server, tmp_path):
    command = [str(Path(sys.executable).with_name("hy3d-client")), "generate", str(EXAMPLE), "--out", str(tmp_path / "x.glb"),
               "--url", triton_server.grpc_url, *sum(([f"--{k.replace('_', '-')}", str(v)] for k, v in
                                                      {**LONG, "seed": 37}.items()), [])]
    # A shell without job control starts background jobs with SIGINT ignored, and children inherit that:
    # give the CLI the default disposition, so that Python turns SIGINT into KeyboardInterrupt.
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"},
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for line in process.stderr:
            if line.startswith("hy3d-client: paint:"):
                break
        process.send_signal(signal.SIGINT)
        _, rest = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    assert "interrupted" in rest
    assert not (tmp_path / "x.glb").exists()


# ---------------------------------------------------------------------------------------------------------
# Neural engines, tiny checkpoints (as tests/serving/test_neural_engines.py serves them)
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_neural_server(tmp_path_factory, serve_model_repository):
    from paint.tiny_weights import build_tiny_paint_weights

    from .test_neural_engines import TINY_PAINT_SETTINGS, shape_weights

    weights = shape_weights(tmp_path_factory.mktemp("stream-weights"))
    build_tiny_paint_weights(weights)
    server = serve_model_repository(tmp_path_factory.mktemp("stream-neural") / "server.log",
                                    {"HY3D_WEIGHTS_DIR": str(weights), **TINY_PAINT_SETTINGS})
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.slow
def test_neural_engines_send_one_response_per_denoising_step_of_shape_and_of_multiview_diffusion(tiny_neural_server):
    from hy3dpaint.pipeline import Hunyuan3DPaintConfig

    from .test_neural_engines import REFERENCE_RUN, shape_image

    parameters = {**REFERENCE_RUN, "face_count": 2000}
    reports: list = []
    client = Hy3DClient(tiny_neural_server.grpc_url, "grpc", timeout_s=RESPONSE_TIMEOUT_S)
    result = client.generate_result(shape_image(), progress=reports.append, **parameters)
    stages = [report.stage for report in reports]
    assert stages.count("shape:denoise") == parameters["num_inference_steps"]
    assert stages.count("paint:diffusion") == Hunyuan3DPaintConfig.num_inference_steps
    assert list(dict.fromkeys(stages)) == list(contract.PHASES)
    assert [r.fraction for r in reports] == sorted(r.fraction for r in reports)
    assert result.glb == generate(tiny_neural_server.grpc_url, "grpc", shape_image(), parameters).glb


def test_dropping_the_connection_cancels_the_stream_on_the_server(triton_server, tmp_path):
    script = ("import sys, threading, tritonclient.grpc as g\n"
              "from hy3d_client.sdk import Hy3DClient\n"
              "def report(p):\n"
              "    if p.stage.startswith('paint:'):\n"
              "        print('paint', flush=True); threading.Event().wait()\n"
              f"Hy3DClient({triton_server.grpc_url!r}, 'grpc').generate_result({str(EXAMPLE)!r}, "
              f"request_id='stream-dropped', progress=report, **{dict(LONG, seed=38)!r})\n")
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline() == "paint\n"
        process.kill()  # no stop_stream: the connection just goes away
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    wait_for(lambda: any("[hy3d_stream" in line and "cancelled by the client at paint_pbr" in line
                         for line in request_lines(triton_server, "stream-dropped")))
    assert not any("[paint_pbr" in line and "GLB: " in line for line in request_lines(triton_server, "stream-dropped"))
