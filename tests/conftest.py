"""Fixtures shared by the whole suite.

``triton_server`` (session): ``scripts/serve`` running ``model_repository/`` with the built-in engines on
free loopback ports; the object has ``.http_url`` ("127.0.0.1:PORT"), ``.grpc_url``, ``.metrics_url``
and ``.log_path``. It is stopped (SIGTERM, then SIGKILL) at the end of the session, even on failure.

``serve_model_repository`` (session): the function that starts such a server with extra environment
(e.g. ``HY3D_WEIGHTS_DIR``), for tests that need a differently configured server; the caller stops it.
Both run with Triton's response cache off (``HY3D_CACHE_BYTES=0``), so that a repeated request is computed
again and a determinism test means something; tests of the cache pass ``HY3D_CACHE_BYTES`` themselves.

``pin_cpu_device`` (autouse, session): the suite runs with ``HY3D_DEVICE=cpu``, and so do the servers above,
so that it passes on a CUDA host as on CPU-only CI; the CUDA tier (``tests/gpu``) names its devices itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hy3d_tooling.server_process import ServeProcess

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVE_SCRIPT = REPO_ROOT / "scripts" / "serve"
#: Seconds the test servers may take to load every model.
SERVER_READY_TIMEOUT_S = 600
#: Stage settings that must not leak from the developer's shell into the built-in-engine server.
STAGE_ENVIRONMENT = ("HY3D_WEIGHTS_DIR", "HY3D_DEVICE", "HY3D_DTYPE", "HY3D_PAINT_VIEW_SIZE",
                     "HY3D_PAINT_RENDER_SIZE", "HY3D_PAINT_TEXTURE_SIZE", "HY3D_PAINT_MAX_NUM_VIEW",
                     "HY3D_REQUIRE_WEIGHTS", "HY3D_MODEL_CONFIG", "HY3D_REMBG_MODEL", "U2NET_HOME",
                     "HY3D_MAX_QUEUE_SIZE", "HY3D_CACHE_BYTES", "HY3D_DRAIN_TIMEOUT_S")
#: Test servers compute every request (the response cache would answer a repeat without running a stage).
NO_RESPONSE_CACHE = {"HY3D_CACHE_BYTES": "0"}
#: The suite (but ``tests/gpu``) assumes a CPU in float32: pinned so that it also passes on a CUDA host,
#: where ``auto`` would pick the GPU in float16.
CPU_TEST_ENVIRONMENT = {"HY3D_DEVICE": "cpu"}


def serve(log_path: Path, env: dict[str, str] | None = None) -> ServeProcess:
    """Start ``scripts/serve`` on free loopback ports with ``env`` on top of a clean stage environment."""
    environment = {name: "" for name in STAGE_ENVIRONMENT if name in os.environ}
    environment.update(CPU_TEST_ENVIRONMENT)
    environment.update(NO_RESPONSE_CACHE)
    environment.update(env or {})
    return ServeProcess([str(SERVE_SCRIPT)], log_path, env=environment,
                        ready_timeout_s=SERVER_READY_TIMEOUT_S).start()


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """A real tritonserver serving ``model_repository/`` with the built-in engines."""
    server = serve(tmp_path_factory.mktemp("triton") / "server.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def serve_model_repository() -> Callable[[Path, dict[str, str] | None], ServeProcess]:
    """``start(log_path, env)`` -> a ready ``scripts/serve`` server with ``env``; the caller stops it."""
    return serve


@pytest.fixture(scope="session", autouse=True)
def pin_cpu_device() -> Iterator[None]:
    """The whole session resolves ``HY3D_DEVICE=cpu`` (not ``auto``), module-scoped fixtures included; the
    CUDA tier (``tests/gpu``) passes its devices explicitly."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in CPU_TEST_ENVIRONMENT.items():
            patch.setenv(name, value)
        yield
