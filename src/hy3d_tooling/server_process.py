"""A served model repository in a child process on free loopback ports (tests, demo, benchmark).

:class:`ServeProcess` runs a launcher command (``scripts/serve`` or ``python -m hy3d_tooling.launcher``)
with ``HY3D_*_PORT`` set to free ports and ``HY3D_BIND_ADDRESS=127.0.0.1``, waits for readiness and
stops it with SIGTERM (then SIGKILL) even when the caller fails.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from hy3d_serving import settings as s

from .health import wait_until_ready
from .supervisor import children_of, command_line
from .triton_runtime import ServerEndpoints

#: Loopback address the child binds to.
LOOPBACK = "127.0.0.1"
#: Seconds to wait for a graceful exit after SIGTERM before SIGKILL.
STOP_TIMEOUT_S = 90
#: Lines of the server log quoted when it fails to start.
LOG_TAIL_LINES = 40
#: The launcher run by :meth:`ServeProcess.python_launcher`.
LAUNCHER_COMMAND = (sys.executable, "-m", "hy3d_tooling.launcher")


class ServerStartError(RuntimeError):
    """The server exited or did not become ready; the message quotes the end of its log."""


def free_port() -> int:
    """A TCP port on the loopback interface that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


class ServeProcess:
    """``with ServeProcess(command, log_path) as server:`` -> a ready server; ``server.http_url`` etc."""

    def __init__(self, command: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None,
                 ready_timeout_s: float = float(s.READY_TIMEOUT_S.default)):
        self.command = list(command)
        self.log_path = Path(log_path)
        self.ready_timeout_s = ready_timeout_s
        self.endpoints = ServerEndpoints(LOOPBACK, free_port(), free_port(), free_port())
        self._env = dict(os.environ)
        self._env.update(env or {})
        self._env.update({
            s.HTTP_PORT.env: str(self.endpoints.http_port),
            s.GRPC_PORT.env: str(self.endpoints.grpc_port),
            s.METRICS_PORT.env: str(self.endpoints.metrics_port),
            s.BIND_ADDRESS.env: LOOPBACK,
            s.READY_TIMEOUT_S.env: str(int(ready_timeout_s)),
        })
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        return self.endpoints.http_url

    @property
    def grpc_url(self) -> str:
        return self.endpoints.grpc_url

    @property
    def metrics_url(self) -> str:
        return self.endpoints.metrics_url

    def start(self) -> ServeProcess:
        """Start the command and wait until every model is ready; raise :class:`ServerStartError` if not."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(self.command, env=self._env, stdout=log, stderr=subprocess.STDOUT)
        if not wait_until_ready(self.http_url, self.ready_timeout_s, self.is_alive):
            self.stop()
            raise ServerStartError(f"{' '.join(self.command)} did not become ready; "
                                   f"end of {self.log_path}:\n{self.log_tail()}")
        return self

    @property
    def pid(self) -> int | None:
        """Pid of the launcher process (None before :meth:`start`)."""
        return None if self._process is None else self._process.pid

    def tritonserver_pid(self) -> int | None:
        """Pid of the tritonserver the launcher runs (None when there is none)."""
        if self._process is None:
            return None
        for child in children_of(self._process.pid):
            if Path(next(iter(command_line(child)), "")).name == "tritonserver":
                return child
        return None

    def is_alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def wait(self, timeout_s: float) -> int | None:
        """Wait up to ``timeout_s`` for the launcher to exit on its own; its exit code, or None if still running."""
        if self._process is None:
            return None
        try:
            return self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> int | None:
        """SIGTERM, wait up to :data:`STOP_TIMEOUT_S`, then SIGKILL; return the exit code (None if never started)."""
        if self._process is None:
            return None
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        return self._process.returncode

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the server log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
