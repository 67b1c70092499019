"""Cancellation benchmark: how much sooner the request queued behind an abandoned one is served.

One server (built-in engines unless HY3D_WEIGHTS_DIR is set). In each scenario a long textured request X
(OCTREE_RESOLUTION 256, FACE_COUNT 40000 by default) is sent and, right after it, a short untextured
request Y; we time Y from its send to its GLB. The scenarios run side by side on the same server:

* ``baseline``: X runs to the end (nobody gives up);
* ``ensemble, X abandoned during shape``: X's client deadline expires while shape_dit runs; Triton stops the
  ensemble between steps, so X's paint_pbr never runs;
* ``ensemble, X abandoned during paint``: the deadline expires after paint_pbr started; Triton 2.51 does
  not tell the step in flight, so X's texture still runs (the limit the stream removes);
* ``stream, X cancelled during paint``: X on hy3d_stream, cancelled at its first ``paint:`` report; the
  stage stops at its next step boundary.

Columns: what X's texture stage did (from the server log), Y's latency and its ratio to the baseline (a
row whose X ran to the end differs from the baseline only by machine noise), and whether Y's GLB is
byte-identical in every scenario (Y's seed differs per scenario so that the response cache never answers
it; the built-in engines ignore the seed of an untextured mesh). Writes ``benchmarks/results/cancel.json`` and
``benchmarks/results/cancel.md``.

    .venv/bin/python benchmarks/bench_cancel.py [--octree-resolution 256] [--face-count 40000]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
from hy3d_client import contract
from hy3d_client.request import InferenceRequest
from hy3d_client.sdk import Hy3DClient
from hy3d_client.stream import GenerationCancelledError
from PIL import Image

from hy3d_tooling.server_process import LAUNCHER_COMMAND, ServeProcess

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
EXAMPLE_IMAGE = REPO_ROOT / "examples" / "mug.png"
SERVER_LOG = REPO_ROOT / "out" / "bench-cancel-server.log"
#: Repeated identical requests must be computed, not answered from Triton's response cache.
NO_CACHE = {"HY3D_CACHE_BYTES": "0"}
#: Seconds any one request may take.
REQUEST_TIMEOUT_S = 900
#: Client deadline of X that expires while its shape stage runs, seconds.
DEADLINE_DURING_SHAPE_S = 0.3
#: The short request queued behind X.
QUEUED = {"octree_resolution": 64, "face_count": 1000, "texture": False}


def ensemble_x(url: str, image: np.ndarray, parameters: dict[str, Any], deadline_s: float | None,
               request_id: str) -> None:
    client = grpcclient.InferenceServerClient(url)
    request = InferenceRequest.build(image, parameters)
    try:
        client.infer(contract.ENSEMBLE_MODEL, request.triton_inputs(grpcclient), client_timeout=deadline_s,
                     request_id=request_id)
    except Exception:  # the abandoned request's deadline
        pass
    finally:
        client.close()


def time_queued(url: str, image: np.ndarray, seed: int) -> tuple[float, bytes]:
    started = time.perf_counter()
    glb = Hy3DClient(url, "grpc", timeout_s=REQUEST_TIMEOUT_S).generate(image, **QUEUED, seed=seed)
    return time.perf_counter() - started, glb


def run_scenario(name: str, url: str, image: np.ndarray, x_parameters: dict[str, Any], seed: int,
                 x_request_id: str) -> dict[str, Any]:
    if name == "stream, X cancelled during paint":
        cancel = threading.Event()

        def on_progress(report) -> None:
            if report.stage.startswith("paint:"):
                cancel.set()

        def stream_x() -> None:
            try:
                Hy3DClient(url, "grpc", timeout_s=REQUEST_TIMEOUT_S).generate_result(
                    image, request_id=x_request_id, progress=on_progress, cancel=cancel, **x_parameters)
            except GenerationCancelledError:
                pass

        x_thread = threading.Thread(target=stream_x)
        x_thread.start()
        cancel.wait(REQUEST_TIMEOUT_S)
    else:
        deadline = {"baseline": None, "ensemble, X abandoned during shape": DEADLINE_DURING_SHAPE_S}.get(name)
        if name == "ensemble, X abandoned during paint":
            deadline = x_parameters["deadline_during_paint_s"]
        x_thread = threading.Thread(target=ensemble_x,
                                    args=(url, image, _without_deadline(x_parameters), deadline, x_request_id))
        x_thread.start()
        time.sleep(0.05)  # X is ahead in the queue
    latency_s, glb = time_queued(url, image, seed)
    x_thread.join()
    return {"scenario": name, "queued_latency_s": latency_s, "queued_glb": glb, "x_request_id": x_request_id}


def x_texture_outcome(log_text: str, request_id: str) -> str:
    """What X's texture stage did, from the server log: ran to the end, never started, or stopped where."""
    lines = [line for line in log_text.splitlines() if f"[paint_pbr request={request_id}]" in line]
    for line in lines:
        if "cancelled by the client at " in line:
            return "stopped at " + line.split("cancelled by the client at ")[1].split(";")[0]
    if any("texturing" in line and " done in " in line for line in lines):
        return "ran to the end"
    return "never started" if not lines else "?"


def _without_deadline(parameters: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in parameters.items() if key != "deadline_during_paint_s"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--octree-resolution", type=int, default=256)
    parser.add_argument("--face-count", type=int, default=40000)
    parser.add_argument("--deadline-during-paint", type=float, default=4.0,
                        help="X's deadline in the 'abandoned during paint' scenario, seconds (after its shape)")
    args = parser.parse_args(argv)
    image = np.asarray(Image.open(EXAMPLE_IMAGE).convert("RGBA"))
    SERVER_LOG.parent.mkdir(exist_ok=True)
    scenarios = ("baseline", "ensemble, X abandoned during shape", "ensemble, X abandoned during paint",
                 "stream, X cancelled during paint")
    server = ServeProcess(LAUNCHER_COMMAND, SERVER_LOG, env=NO_CACHE).start()
    try:
        Hy3DClient(server.grpc_url, "grpc", timeout_s=REQUEST_TIMEOUT_S).generate(image, **QUEUED, seed=1)  # warm-up
        rows = []
        for index, name in enumerate(scenarios):
            x_parameters = {"octree_resolution": args.octree_resolution, "face_count": args.face_count,
                            "seed": 1000 + index, "deadline_during_paint_s": args.deadline_during_paint}
            if name.startswith("stream"):
                x_parameters = _without_deadline(x_parameters)
            rows.append(run_scenario(name, server.grpc_url, image, x_parameters, seed=2000 + index,
                                     x_request_id=f"bench-x-{index}"))
        time.sleep(1.0)  # the last log lines land
        log_text = SERVER_LOG.read_text(errors="replace")
        for row in rows:
            row["x_texture"] = x_texture_outcome(log_text, row["x_request_id"])
    finally:
        server.stop()
    baseline = rows[0]["queued_latency_s"]
    identical = all(row["queued_glb"] == rows[0]["queued_glb"] for row in rows)
    lines = ["| scenario | X's texture stage | queued request's latency | sooner than baseline | queued GLB identical |",
             "| --- | --- | --- | --- | --- |"]
    for row in rows:
        lines.append(f"| {row['scenario']} | {row['x_texture']} | {row['queued_latency_s']:.2f} s | "
                     f"{baseline / row['queued_latency_s']:.1f}x | {'yes' if identical else 'NO'} |")
    table = (f"X: OCTREE_RESOLUTION {args.octree_resolution}, FACE_COUNT {args.face_count}, textured; "
             f"queued Y: {QUEUED}\n\n" + "\n".join(lines) + "\n")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "cancel.json").write_text(json.dumps(
        {"x": {"octree_resolution": args.octree_resolution, "face_count": args.face_count},
         "rows": [{k: v for k, v in row.items() if k != "queued_glb"} for row in rows],
         "queued_glb_identical": identical}, indent=2) + "\n")
    (RESULTS_DIR / "cancel.md").write_text(table)
    sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
