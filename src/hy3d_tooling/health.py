"""Readiness probing of a running tritonserver over its HTTP endpoint."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable

#: Path of Triton's readiness endpoint (200 once every model is ready).
READY_PATH = "/v2/health/ready"
#: Seconds one readiness probe may take.
PROBE_TIMEOUT_S = 2.0
#: Seconds between two readiness probes.
PROBE_INTERVAL_S = 0.5


def is_ready(http_url: str) -> bool:
    """Whether the server at ``http_url`` ("host:port") answers 200 on ``/v2/health/ready``."""
    try:
        with urllib.request.urlopen(f"http://{http_url}{READY_PATH}", timeout=PROBE_TIMEOUT_S) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_until_ready(http_url: str, timeout_s: float, is_alive: Callable[[], bool]) -> bool:
    """Poll until the server is ready (True), the process died or ``timeout_s`` passed (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if is_ready(http_url):
            return True
        if not is_alive():
            return False
        time.sleep(PROBE_INTERVAL_S)
    return False
