"""Graceful drain: SIGTERM to scripts/serve turns readiness false, refuses new requests, lets the request
in flight finish with its GLB, then exits 0."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from hy3d_client.errors import ServerError
from hy3d_client.retry import RetryPolicy
from hy3d_client.sdk import Hy3DClient

from hy3d_tooling.health import is_ready

from .ensemble_client import REQUEST_TIMEOUT_S
from .test_ensemble import example_rgba
from .test_launcher import wait_for_line

pytestmark = pytest.mark.integration

#: A request that takes seconds with the built-in engines (fine grid, textured).
SLOW = {"octree_resolution": 160, "face_count": 10000, "seed": 4242}
#: Seconds the drained server may take to exit.
EXIT_WAIT_S = 120


def test_sigterm_drains_the_request_in_flight_refuses_new_ones_and_exits_0(serve_model_repository, tmp_path):
    server = serve_model_repository(tmp_path / "server.log", {"HY3D_DRAIN_TIMEOUT_S": "300"})
    try:
        client = Hy3DClient(server.http_url, "http", timeout_s=REQUEST_TIMEOUT_S, retry=RetryPolicy(attempts=1))
        outcome: dict[str, object] = {}

        def in_flight() -> None:
            try:
                outcome["result"] = client.generate_result(example_rgba(), request_id="drain-in-flight", **SLOW)
            except Exception as error:  # reported by the assertions below
                outcome["error"] = error

        sender = threading.Thread(target=in_flight)
        sender.start()
        assert wait_for_line(server.log_path, "[shape_dit request=drain-in-flight]", timeout_s=120)
        os.kill(server.pid, signal.SIGTERM)
        assert wait_for_line(server.log_path, "draining:", timeout_s=30)

        deadline = time.monotonic() + 30
        while is_ready(server.http_url) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not is_ready(server.http_url), "readiness stayed true while draining"
        with pytest.raises(ServerError) as refused:
            client.generate_result(example_rgba(), request_id="drain-late", **{**SLOW, "seed": 4343})
        assert "drain-in-flight" not in str(refused.value)

        sender.join(timeout=REQUEST_TIMEOUT_S)
        assert "error" not in outcome, outcome.get("error")
        assert outcome["result"].glb[:4] == b"glTF"
        status = server.wait(EXIT_WAIT_S)  # on its own, after the drain: no second signal
    finally:
        server.stop()
    assert status == 0
    log = server.log_path.read_text()
    assert "received SIGTERM: draining, then stopping tritonserver" in log
    assert "drained in" in log
    assert "[preprocess request=drain-late]" not in log  # refused before any stage ran
    assert "tritonserver exited with status 0" in log
