"""Foreground launcher of tritonserver with our model repository (what ``scripts/serve`` runs).

``python -m hy3d_tooling.launcher [extra tritonserver arguments]``: reads the server settings
(``HY3D_HTTP_PORT`` ...), starts tritonserver, logs when every model is ready, forwards SIGTERM/SIGINT
to it, waits for it and exits with its status (128 + signal number when it was killed by a signal).
"""

from __future__ import annotations

import ctypes
import logging
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hy3d_serving import settings as s

from .health import wait_until_ready
from .triton_runtime import (
    PYTHON_BACKEND,
    STUB_NAME,
    ServerEndpoints,
    TritonRuntimeError,
    assemble_backend_directory,
    check_stub_libraries,
    find_triton_install,
    server_command,
    server_environment,
)

logger = logging.getLogger("hy3d_tooling.launcher")

#: Model repository of the checkout this package was installed from (editable install).
CHECKOUT_MODEL_REPOSITORY = Path(__file__).resolve().parents[2] / "model_repository"
#: Where our Triton backend directory is assembled: inside the virtual environment.
BACKENDS_DIR = Path(sys.prefix) / "triton-backends"
#: Exit status when the server did not become ready.
EXIT_NOT_READY = 3
#: Exit status when the settings or the Triton install are wrong.
EXIT_BAD_SETUP = 2
#: Most seconds ``--ready-timeout`` may be set to.
MAX_READY_TIMEOUT_S = 24 * 3600
#: Linux prctl option: signal delivered to the child when its parent dies.
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class LaunchOptions:
    """Server settings, resolved from the environment."""

    endpoints: ServerEndpoints
    model_repository: Path
    ready_timeout_s: int
    log_verbose: int

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> LaunchOptions:
        """Read ``HY3D_HTTP_PORT`` ... from ``environ``; raises ``SettingsError`` naming a bad value."""

        def read_int(setting: s.Setting, low: int, high: int) -> int:
            return s.parse_int(setting, s.lookup(setting, environ=environ) or setting.default, low, high)

        endpoints = ServerEndpoints(
            bind_address=s.lookup(s.BIND_ADDRESS, environ=environ) or s.BIND_ADDRESS.default,
            http_port=read_int(s.HTTP_PORT, 1, s.MAX_PORT),
            grpc_port=read_int(s.GRPC_PORT, 1, s.MAX_PORT),
            metrics_port=read_int(s.METRICS_PORT, 1, s.MAX_PORT),
        )
        ports = (endpoints.http_port, endpoints.grpc_port, endpoints.metrics_port)
        if len(set(ports)) != len(ports):
            raise s.SettingsError(f"{s.HTTP_PORT.env}, {s.GRPC_PORT.env} and {s.METRICS_PORT.env} "
                                  f"must differ, got {ports}")
        repository = Path(s.lookup(s.MODEL_REPOSITORY, environ=environ) or CHECKOUT_MODEL_REPOSITORY)
        if not repository.is_dir():
            raise s.SettingsError(f"{s.MODEL_REPOSITORY.env}={str(repository)!r} is not a directory")
        return cls(endpoints, repository.resolve(), read_int(s.READY_TIMEOUT_S, 1, MAX_READY_TIMEOUT_S),
                   read_int(s.LOG_VERBOSE, 0, 3))


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def exit_status(returncode: int) -> int:
    """A shell-style exit status: the code itself, or 128 + N when the process died of signal N."""
    return 128 - returncode if returncode < 0 else returncode


def run(options: LaunchOptions, extra_args: Sequence[str] = ()) -> int:
    """Start tritonserver in the foreground and return its exit status (see the module docstring)."""
    install = find_triton_install()
    env = server_environment(install)
    backends = assemble_backend_directory(install, BACKENDS_DIR)
    check_stub_libraries(backends / PYTHON_BACKEND / STUB_NAME, env)
    command = server_command(install, options.model_repository, backends, options.endpoints,
                             options.log_verbose, tuple(extra_args))
    logger.info("starting tritonserver: %s", " ".join(command))
    # Own session: a Ctrl-C on the terminal reaches tritonserver once, through `forward`, not twice.
    server = subprocess.Popen(command, env=env, preexec_fn=_die_with_parent, start_new_session=True)

    def forward(signum: int, _frame: object) -> None:
        logger.info("received %s, stopping tritonserver", signal.Signals(signum).name)
        server.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    endpoints = options.endpoints
    if wait_until_ready(endpoints.http_url, options.ready_timeout_s, lambda: server.poll() is None):
        logger.info("tritonserver ready: http=%s grpc=%s metrics=%s (bound to %s)", endpoints.http_port,
                    endpoints.grpc_port, endpoints.metrics_port, endpoints.bind_address)
    elif server.poll() is None:
        logger.error("tritonserver not ready after %d s (%s); stopping it", options.ready_timeout_s,
                     s.READY_TIMEOUT_S.env)
        server.terminate()
        server.wait()
        return EXIT_NOT_READY
    returncode = server.wait()
    logger.info("tritonserver exited with status %d", exit_status(returncode))
    return exit_status(returncode)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m hy3d_tooling.launcher``; extra arguments go to tritonserver."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s hy3d-serve %(levelname)s %(message)s")
    try:
        options = LaunchOptions.from_environ()
        return run(options, list(sys.argv[1:] if argv is None else argv))
    except (s.SettingsError, TritonRuntimeError) as error:
        logger.error("%s", error)
        return EXIT_BAD_SETUP


if __name__ == "__main__":
    sys.exit(main())
