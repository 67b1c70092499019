"""Back-pressure: HY3D_MAX_QUEUE_SIZE bounds the requests waiting per stage; one more is refused at once
with UNAVAILABLE (gRPC) / 503 (HTTP) naming the limit, before the requests it waited behind finish."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from hy3d_client.errors import ServerError
from hy3d_client.retry import RetryPolicy
from hy3d_client.sdk import Hy3DClient

from hy3d_tooling import launcher
from hy3d_tooling.repository import write_served_copy

from .ensemble_client import REQUEST_TIMEOUT_S
from .test_ensemble import example_rgba

REPOSITORY = Path(__file__).resolve().parents[2] / "model_repository"
STAGES = ("preprocess", "shape_dit", "paint_pbr")
#: Concurrent requests sent against a queue bound of 1: more than the stages can hold.
BURST = 8
#: Seconds-long requests (fine grid, textured), so that a queue forms.
SLOW = {"octree_resolution": 256, "face_count": 20000}


def test_every_stage_config_bounds_its_queue_and_only_the_ensemble_caches_responses():
    for stage in STAGES:
        for config in (REPOSITORY / stage / "config.pbtxt", *(REPOSITORY / stage / "configs").glob("*.pbtxt")):
            text = config.read_text()
            assert "dynamic_batching { default_queue_policy { max_queue_size: 8 } }" in text, config
            # Triton 2.51 would replay a cached error response of a Python model as an empty success.
            assert "response_cache { enable: true }" not in text, config
    assert "response_cache { enable: true }" in (REPOSITORY / "hy3d_ensemble" / "config.pbtxt").read_text()


def test_the_served_copy_carries_hy3d_max_queue_size_into_every_config(tmp_path):
    served = write_served_copy(REPOSITORY, tmp_path / "served", max_queue_size=3)
    for stage in STAGES:
        assert "max_queue_size: 3" in (served / stage / "config.pbtxt").read_text()
        assert (served / stage / "1").resolve() == (REPOSITORY / stage / "1").resolve()
        for variant in (REPOSITORY / stage / "configs").glob("*.pbtxt"):
            served_variant = (served / stage / "configs" / variant.name).read_text()
            assert served_variant == variant.read_text().replace("max_queue_size: 8", "max_queue_size: 3")
    assert (REPOSITORY / "shape_dit" / "config.pbtxt").read_text().count("max_queue_size: 8") == 1  # untouched


def test_queue_size_and_cache_settings_reach_the_tritonserver_flags():
    install = launcher.find_triton_install()
    options = launcher.LaunchOptions.from_environ({"HY3D_MAX_QUEUE_SIZE": "2", "HY3D_CACHE_BYTES": "1048576"})
    assert options.max_queue_size == 2
    flags = launcher.triton_flags(options, install)
    assert "--cache-config=local,size=1048576" in flags
    assert f"--cache-directory={install.cache_directory}" in flags
    assert (install.cache_directory / "local" / "libtritoncache_local.so").is_file()
    no_cache = launcher.triton_flags(launcher.LaunchOptions.from_environ({"HY3D_CACHE_BYTES": "0"}), install)
    assert not [flag for flag in no_cache if flag.startswith("--cache")]


@pytest.mark.integration
@pytest.mark.parametrize(("protocol", "refusal"), [("grpc", "StatusCode.UNAVAILABLE"), ("http", "503")])
def test_a_request_over_the_queue_bound_is_refused_at_once_naming_the_limit(serve_model_repository, tmp_path,
                                                                            protocol, refusal):
    server = serve_model_repository(tmp_path / "server.log", {"HY3D_MAX_QUEUE_SIZE": "1"})
    try:
        url = server.grpc_url if protocol == "grpc" else server.http_url
        client = Hy3DClient(url, protocol, timeout_s=REQUEST_TIMEOUT_S, retry=RetryPolicy(attempts=1))
        finished: list[tuple[float, object]] = []
        lock = threading.Lock()

        def send(seed: int) -> None:
            try:
                outcome: object = client.generate_result(example_rgba(), seed=seed, **SLOW)
            except ServerError as error:
                outcome = error
            with lock:
                finished.append((time.monotonic(), outcome))

        senders = [threading.Thread(target=send, args=(9000 + n,)) for n in range(BURST)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(timeout=REQUEST_TIMEOUT_S)
    finally:
        server.stop()
    refused = [(at, error) for at, error in finished if isinstance(error, ServerError)]
    served = [at for at, outcome in finished if not isinstance(outcome, ServerError)]
    assert len(finished) == BURST
    assert refused and served, finished
    for _, error in refused:
        assert error.status == refusal
        assert "Exceeds maximum queue size" in str(error) and "HY3D_MAX_QUEUE_SIZE" in str(error)
        assert not error.transient or "gave up after 1 attempt" in str(error)
    assert max(at for at, _ in refused) < min(served)  # refused while the first requests still ran
