"""Serving benchmark: each stage in-process, then the same request through Triton (HTTP, gRPC, perf_analyzer).

Runs in one process, side by side, with the engines the server would load (built-in ones unless
HY3D_WEIGHTS_DIR is set), at OCTREE_RESOLUTION 256 / FACE_COUNT 40000 by default, on the bundled example
image. The runs are interleaved (in-process, HTTP, gRPC, in-process, ...) so that a change in machine load
hits all three alike. Two overhead rows:

* ``Triton overhead``: the ensemble's median latency over HTTP minus the in-process median;
* ``Triton overhead per request``: each request's latency minus the compute time Triton's statistics
  report for its three stages (queueing, tensor copies between the stages, (de)serialisation, network),
  which does not depend on how busy the CPU was during the compute.

Writes ``benchmarks/results/serving.json`` and ``benchmarks/results/serving.md``.

    .venv/bin/python benchmarks/bench_serving.py [--repeats 3] [--octree-resolution 256] [--face-count 40000]

Torch uses its default thread count (reported in the results); the server's stubs do the same.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.http as httpclient
from hy3d_client import contract
from hy3d_client.sdk import Hy3DClient
from PIL import Image

from hy3d_serving.engines import load_background_remover, load_paint_engine, load_shape_engine
from hy3d_serving.stage_config import StageConfig
from hy3d_serving.stages import make_asset, make_shape, preprocess_image
from hy3d_tooling.server_process import LAUNCHER_COMMAND, ServeProcess
from hy3d_tooling.triton_runtime import find_triton_install, perf_analyzer_library_dir

logger = logging.getLogger("bench_serving")

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
EXAMPLE_IMAGE = REPO_ROOT / "examples" / "mug.png"
#: The benchmark server's log (out/ is git-ignored).
SERVER_LOG = REPO_ROOT / "out" / "bench-serving-server.log"
#: Repeated identical requests must be computed, not answered from Triton's response cache.
NO_CACHE = {"HY3D_CACHE_BYTES": "0"}
PERF_ANALYZER = Path(sys.executable).with_name("perf_analyzer")
#: The ensemble's steps, whose compute time Triton's statistics report.
STAGE_MODELS = ("preprocess", "shape_dit", "paint_pbr")
#: Requests perf_analyzer measures per window, and most windows it tries before reporting.
PERF_REQUESTS_PER_WINDOW = 3
PERF_MAX_TRIALS = 3
#: Largest deviation (%) between windows perf_analyzer accepts as stable: effectively any, because single
#: requests take seconds on a shared CPU and vary more than its 10 % default allows.
PERF_STABILITY_PERCENT = 1000
#: Seconds perf_analyzer may run.
PERF_TIMEOUT_S = 3600
#: Seconds one request through Triton may take.
REQUEST_TIMEOUT_S = 3600
US_PER_S = 1e6
MS_PER_S = 1e3
NS_PER_S = 1e9


def timed(run: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of one call."""
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def stage_compute_s(statistics_client: httpclient.InferenceServerClient) -> float:
    """Cumulative compute time (input + infer + output) of the three stages, from Triton's statistics."""
    total_ns = 0
    for model in STAGE_MODELS:
        (stats,) = statistics_client.get_inference_statistics(model)["model_stats"]
        inference = stats["inference_stats"]
        total_ns += sum(int(inference[part]["ns"]) for part in ("compute_input", "compute_infer", "compute_output"))
    return total_ns / NS_PER_S


class InProcess:
    """The engines loaded in this process, run stage by stage as the Triton models run them."""

    def __init__(self) -> None:
        config = StageConfig.resolve({})
        self.load_s, (self.remover, self.shape_engine, self.paint_engine) = timed(
            lambda: (load_background_remover(), load_shape_engine(config), load_paint_engine(config)))

    def run(self, image: np.ndarray, params: dict[str, Any]) -> tuple[dict[str, float], Any]:
        """Seconds per stage (and their sum) and the asset of one request."""
        preprocess_s, rgba = timed(lambda: preprocess_image(image, params["remove_background"], self.remover))
        shape_s, mesh = timed(lambda: make_shape(self.shape_engine, rgba, params))
        paint_s, asset = timed(lambda: make_asset(self.paint_engine, self.shape_engine.name, mesh, rgba, params))
        seconds = {"preprocess_s": preprocess_s, "shape_s": shape_s, "paint_export_s": paint_s,
                   "total_s": preprocess_s + shape_s + paint_s}
        return seconds, asset


def through_triton(client: Hy3DClient, statistics_client: httpclient.InferenceServerClient, image: np.ndarray,
                   request: dict[str, Any]) -> tuple[float, float, Any]:
    """(latency, Triton overhead, result) of one ensemble request."""
    compute_before = stage_compute_s(statistics_client)
    latency_s, result = timed(lambda: client.generate_result(image, **request))
    return latency_s, latency_s - (stage_compute_s(statistics_client) - compute_before), result


def perf_analyzer(url: str, image: np.ndarray, params: dict[str, Any]) -> dict[str, float]:
    """p50 latency and throughput of ``hy3d_ensemble`` over HTTP measured by perf_analyzer (concurrency 1)."""
    libraries = perf_analyzer_library_dir(find_triton_install(), Path(sys.prefix) / "perf-analyzer-libs")
    work = Path(tempfile.mkdtemp(prefix="hy3d-perf-"))
    try:  # perf_analyzer reads one raw file per input from a directory
        (work / contract.IMAGE_INPUT).write_bytes(image.tobytes())
        for parameter in contract.PARAMETERS:
            tensor = contract.parameter_tensor(parameter, params[parameter.key])
            # A BYTES input's file holds the string itself (perf_analyzer's binary input-data layout).
            raw = tensor[0] if parameter.triton_dtype == "BYTES" else tensor.tobytes()
            (work / parameter.name).write_bytes(raw)
        report = work / "report.csv"
        command = [
            str(PERF_ANALYZER), "-m", contract.ENSEMBLE_MODEL, "-u", url, "-i", "http",
            "--input-data", str(work), "--shape", f"{contract.IMAGE_INPUT}:{','.join(map(str, image.shape))}",
            "--concurrency-range", "1:1", "--measurement-mode", "count_windows",
            "--measurement-request-count", str(PERF_REQUESTS_PER_WINDOW), "--max-trials", str(PERF_MAX_TRIALS),
            "--stability-percentage", str(PERF_STABILITY_PERCENT), "-f", str(report),
        ]
        env = {**os.environ,
               "LD_LIBRARY_PATH": os.pathsep.join([str(libraries), os.environ.get("LD_LIBRARY_PATH", "")])}
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=PERF_TIMEOUT_S, check=False)
        logger.info("perf_analyzer:\n%s", result.stdout[-2000:])
        if result.returncode != 0 or not report.exists():
            raise RuntimeError(f"perf_analyzer failed ({result.returncode}): {result.stderr[-2000:]}")
        with open(report, newline="") as handle:
            row = next(csv.DictReader(handle))
        return {"p50_latency_s": float(row["p50 latency"]) / US_PER_S,
                "throughput_per_s": float(row["Inferences/Second"])}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def benchmark(image: np.ndarray, params: dict[str, Any], repeats: int) -> dict[str, Any]:
    """Interleaved in-process / HTTP / gRPC runs, then perf_analyzer; raw durations of every run."""
    request = {p.key: params[p.key] for p in contract.PARAMETERS}
    runs: dict[str, list[Any]] = {"in_process": [], "http": [], "grpc": [], "http_overhead": [],
                                  "grpc_overhead": []}
    startup_s, server = timed(lambda: ServeProcess(LAUNCHER_COMMAND, SERVER_LOG, env=NO_CACHE).start())
    try:
        local = InProcess()
        http = Hy3DClient(server.http_url, "http", timeout_s=REQUEST_TIMEOUT_S)
        grpc = Hy3DClient(server.grpc_url, "grpc", timeout_s=REQUEST_TIMEOUT_S)
        statistics_client = httpclient.InferenceServerClient(server.http_url)
        local.run(image, params)  # warm-up, both sides
        http.generate_result(image, **request)
        glb_identical = True
        for _ in range(repeats):
            seconds, asset = local.run(image, params)
            runs["in_process"].append(seconds)
            for protocol, client in (("http", http), ("grpc", grpc)):
                latency_s, overhead_s, result = through_triton(client, statistics_client, image, request)
                runs[protocol].append(latency_s)
                runs[f"{protocol}_overhead"].append(overhead_s)
                glb_identical = glb_identical and result.glb == asset.glb
        perf = perf_analyzer(server.http_url, image, params)
    finally:
        server.stop()
    return {"startup_s": startup_s, "load_in_process_s": local.load_s, "engine": asset.engine,
            "faces": len(_faces(asset.glb)), "glb_bytes": len(asset.glb), "glb_identical": glb_identical,
            "runs": runs, "perf_analyzer_http": perf}


def _faces(glb: bytes) -> np.ndarray:
    import io

    import trimesh

    return trimesh.load(io.BytesIO(glb), file_type="glb", force="mesh", process=False).faces


def summary(measured: dict[str, Any]) -> dict[str, float]:
    """Medians of every measured quantity, in seconds."""
    runs = measured["runs"]
    medians = {key: statistics.median(run[key] for run in runs["in_process"]) for key in runs["in_process"][0]}
    for key in ("http", "grpc", "http_overhead", "grpc_overhead"):
        medians[f"{key}_s"] = statistics.median(runs[key])
    medians["triton_overhead_s"] = medians["http_s"] - medians["total_s"]
    return medians


def markdown(setup: dict[str, Any], measured: dict[str, Any], medians: dict[str, float]) -> str:
    """The results as a markdown table."""
    rows = [
        ("preprocess (in-process)", medians["preprocess_s"]),
        ("shape: generation + post-processing (in-process)", medians["shape_s"]),
        ("paint + GLB export (in-process)", medians["paint_export_s"]),
        ("whole request, in-process", medians["total_s"]),
        ("ensemble through Triton, HTTP", medians["http_s"]),
        ("ensemble through Triton, gRPC", medians["grpc_s"]),
        ("ensemble through Triton, perf_analyzer p50 (HTTP)", measured["perf_analyzer_http"]["p50_latency_s"]),
        ("**Triton overhead** (HTTP median - in-process median)", medians["triton_overhead_s"]),
        ("Triton overhead per request, HTTP (latency - stage compute)", medians["http_overhead_s"]),
        ("Triton overhead per request, gRPC (latency - stage compute)", medians["grpc_overhead_s"]),
    ]
    return "\n".join([
        "# Serving benchmark",
        "",
        f"{measured['engine']}, OCTREE_RESOLUTION {setup['octree_resolution']}, FACE_COUNT {setup['face_count']}, "
        f"image {setup['image']}; median of {setup['repeats']} interleaved runs; {setup['cpu']} "
        f"({setup['cpu_count']} cores shared with other work, torch threads {setup['torch_threads']}), no GPU.",
        "",
        "| step | median (ms) |",
        "| --- | ---: |",
        *[f"| {name} | {seconds * MS_PER_S:.1f} |" for name, seconds in rows],
        "",
        f"perf_analyzer throughput (concurrency 1): {measured['perf_analyzer_http']['throughput_per_s']:.3f} "
        f"requests/s. Server start-up (all models ready): {measured['startup_s']:.1f} s. GLB: "
        f"{measured['glb_bytes']} bytes, {measured['faces']} faces; identical bytes in-process and through "
        f"Triton in every run: {measured['glb_identical']}.",
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--octree-resolution", type=int, default=contract.DEFAULTS["octree_resolution"])
    parser.add_argument("--face-count", type=int, default=contract.DEFAULTS["face_count"])
    parser.add_argument("--image", type=Path, default=EXAMPLE_IMAGE)
    args = parser.parse_args(argv)
    import torch

    image = np.asarray(Image.open(args.image).convert("RGBA"))
    params = contract.validate_parameters({"octree_resolution": args.octree_resolution, "face_count": args.face_count})
    setup = {"octree_resolution": args.octree_resolution, "face_count": args.face_count, "image": args.image.name,
             "repeats": args.repeats, "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
             "torch_threads": torch.get_num_threads(), "gpu": False}
    measured = benchmark(image, params, args.repeats)
    medians = summary(measured)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "serving.json").write_text(
        json.dumps({"setup": setup, "medians_s": medians, **measured}, indent=2) + "\n")
    table = markdown(setup, measured, medians)
    (RESULTS_DIR / "serving.md").write_text(table)
    sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
