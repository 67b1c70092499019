"""Soak: 200 requests, valid and malformed mixed, through a real tritonserver.

Promises: the resident memory of every server process (tritonserver and each stage stub) grows by less
than 5% from request 50 to request 200 (medians of the samples around each); the server leaves no file in its temp dir or in /dev/shm beyond
its own (the served repository copy, one shared-memory region per stub) while it runs, and none after
it stops; it is ready throughout, and every request gets its answer (a GLB, or a refusal naming the
input). Small parameters keep it to minutes on 2 cores; the response cache is kept small so that it is
full (and evicting) well before request 50.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from hy3d_client import contract
from tritonclient.utils import InferenceServerException

from hy3d_tooling import supervisor
from hy3d_tooling.health import is_ready
from hy3d_tooling.repository import COPY_PREFIX

from .test_ensemble import example_rgba

#: Seconds the soak may take (a few minutes on an idle 2-core machine; more when the machine is shared).
SOAK_TIMEOUT_S = 2400
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(SOAK_TIMEOUT_S)]

REQUESTS = 200
#: Memory growth is measured from request 50 to request 200, each as the median of the samples taken after
#: the requests of a window around it (one sample jitters by the size of a texture buffer).
MEASURE_FROM = range(41, 61)
MEASURE_TO = range(191, 201)
#: Largest allowed growth of a process's resident memory between the two.
MAX_RSS_GROWTH = 0.05
#: Every this many requests, one is a repeat of an earlier valid one (a response-cache hit).
REPEAT_EVERY = 10
#: Response cache for the soak: a few requests fill it.
SOAK_CACHE_BYTES = 4 << 20
SMALL = {"OCTREE_RESOLUTION": ("INT32", 64), "FACE_COUNT": ("INT32", 2000)}
#: Malformed requests, each refused by the server naming the input (the client's own checks are bypassed).
MALFORMED = (
    ("OCTREE_RESOLUTION", {"OCTREE_RESOLUTION": ("INT32", 100000)}),
    ("FACE_COUNT", {"FACE_COUNT": ("INT32", 10)}),
    ("GUIDANCE_SCALE", {"GUIDANCE_SCALE": ("FP32", float("nan"))}),
    ("IMAGE", {"IMAGE": np.zeros((4, 4, 3), np.uint8)}),
    ("IMAGE", {"IMAGE": np.zeros((64, 64, 4), np.uint8)}),  # alpha 0 everywhere: empty object mask
    ("IMAGE", {"IMAGE": None}),  # missing
)


def _inputs(image: np.ndarray | None, scalars: dict[str, tuple[str, object]]) -> list[httpclient.InferInput]:
    inputs = []
    if image is not None:
        tensor = httpclient.InferInput(contract.IMAGE_INPUT, list(image.shape), "UINT8")
        tensor.set_data_from_numpy(image, binary_data=True)
        inputs.append(tensor)
    for name, (dtype, value) in scalars.items():
        tensor = httpclient.InferInput(name, [1], dtype)
        tensor.set_data_from_numpy(np.array([value], dtype={"INT32": np.int32, "INT64": np.int64,
                                                            "FP32": np.float32, "BOOL": np.bool_}[dtype]))
        inputs.append(tensor)
    return inputs


def _plan(image: np.ndarray) -> list[tuple[str | None, np.ndarray | None, dict[str, tuple[str, object]]]]:
    """``(refused input or None, image, scalar inputs)`` for each request: 3 valid to 1 malformed, repeats."""
    plan = []
    last_valid: dict[str, tuple[str, object]] = {}
    for number in range(1, REQUESTS + 1):
        if number % 4 == 0:
            field, override = MALFORMED[(number // 4) % len(MALFORMED)]
            bad_image = override["IMAGE"] if "IMAGE" in override else image
            scalars = {**SMALL, "SEED": ("INT64", number), **{k: v for k, v in override.items() if k != "IMAGE"}}
            plan.append((field, bad_image, scalars))
        elif number % REPEAT_EVERY == 1 and last_valid:
            plan.append((None, image, dict(last_valid)))  # the same request again: a cache hit
        else:
            last_valid = {**SMALL, "SEED": ("INT64", number), "TEXTURE": ("BOOL", number % 7 != 0)}
            plan.append((None, image, last_valid))
    return plan


def _rss_kib(pid: int) -> int:
    """Resident memory of ``pid``, counting what the kernel swapped out (a shared machine may swap)."""
    fields = {line.split(":")[0]: line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines()
              if line.startswith(("VmRSS:", "VmSwap:"))}
    return int(fields["VmRSS"]) + int(fields.get("VmSwap", 0))


def _shm_files_mapped_by(pids: list[int]) -> set[str]:
    """Names of the /dev/shm files the processes ``pids`` have mapped."""
    names = set()
    for pid in pids:
        for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
            path = line.split(maxsplit=5)[5] if len(line.split(maxsplit=5)) == 6 else ""
            if path.startswith(str(supervisor.SHM_DIR) + "/"):
                names.add(Path(path.removesuffix(" (deleted)")).name)
    return names


def test_200_mixed_requests_leave_memory_flat_no_files_behind_and_the_server_ready(serve_model_repository,
                                                                                   tmp_path):
    server_temp = tmp_path / "server-temp"
    server_temp.mkdir()
    server = serve_model_repository(tmp_path / "server.log", {"TMPDIR": str(server_temp),
                                                              "HY3D_CACHE_BYTES": str(SOAK_CACHE_BYTES)})
    regions: set[str] = set()
    try:
        triton_pid = server.tritonserver_pid()
        stubs = supervisor.stubs_of(triton_pid)
        pids = [triton_pid, *(stub.pid for stub in stubs)]
        names = {triton_pid: "tritonserver", **{stub.pid: stub.instance for stub in stubs}}
        regions = {stub.shm_region for stub in stubs}
        client = httpclient.InferenceServerClient(server.http_url, network_timeout=600)
        rss_at: dict[int, dict[int, int]] = {}
        for number, (refused_input, image, scalars) in enumerate(_plan(example_rgba()), start=1):
            try:
                result = client.infer(contract.ENSEMBLE_MODEL, _inputs(image, scalars))
                assert refused_input is None, f"request {number}: malformed {refused_input} was accepted"
                assert result.as_numpy(contract.GLB_OUTPUT)[0][:4] == b"glTF"
            except InferenceServerException as error:
                assert refused_input is not None, f"request {number} failed: {error}"
                assert error.status() == "400" and refused_input in error.message(), error
            assert is_ready(server.http_url), f"not ready after request {number}"
            if number in MEASURE_FROM or number in MEASURE_TO or number % 25 == 0:
                rss_at[number] = {pid: _rss_kib(pid) for pid in pids}
            if number % 25 == 0:
                print(f"request {number}:", ", ".join(f"{names[pid]} {kib // 1024} MiB"
                                                     for pid, kib in rss_at[number].items()), flush=True)
            if number % 50 == 0:
                assert [p.name for p in server_temp.iterdir()] == [p.name for p in server_temp.glob(COPY_PREFIX + "*")]
                assert len(list(server_temp.iterdir())) == 1
                assert _shm_files_mapped_by(pids) <= regions
        assert [stub.pid for stub in supervisor.stubs_of(triton_pid)] == [stub.pid for stub in stubs]
        client.close()  # tritonserver waits for open HTTP connections when it stops
    finally:
        server.stop()
    def median_kib(window: range, pid: int) -> float:
        return float(np.median([rss_at[number][pid] for number in window]))

    growth = {names[pid]: median_kib(MEASURE_TO, pid) / median_kib(MEASURE_FROM, pid) - 1 for pid in pids}
    print("resident memory growth, request 50 -> 200 (window medians):",
          ", ".join(f"{name} {value:+.1%} ({median_kib(MEASURE_TO, pid) / 1024:.0f} MiB)"
                    for (pid, name), value in zip(names.items(), growth.values())))
    assert all(value < MAX_RSS_GROWTH for value in growth.values()), growth
    assert list(server_temp.iterdir()) == []
    assert not regions & set(os.listdir(supervisor.SHM_DIR))
