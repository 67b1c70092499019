"""Foreground launcher of tritonserver with our model repository (what ``scripts/serve`` runs).

``python -m hy3d_tooling.launcher [extra tritonserver arguments]``: reads the server settings
(``HY3D_HTTP_PORT`` ...), serves a generated copy of the repository (:mod:`.repository`, for
``HY3D_MAX_QUEUE_SIZE``) under explicit model control with the response cache, logs when every model is
ready, and then

* supervises the stage stubs and reloads a stage whose stub died (:mod:`.supervisor`); when that fails
  it stops the server and exits with ``EXIT_STAGE_FAILED``;
* on SIGTERM/SIGINT drains (:mod:`.drain`: readiness false, new requests refused, the ones in flight
  finish within ``HY3D_DRAIN_TIMEOUT_S``), then stops tritonserver; a second signal stops it at once;
* exits with tritonserver's status (128 + signal number when it was killed by a signal).
"""

from __future__ import annotations

import ctypes
import logging
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hy3d_serving import settings as s

from .drain import drain
from .health import wait_until_ready
from .repository import ServedRepository
from .supervisor import EXIT_STAGE_FAILED, Supervisor
from .triton_runtime import (
    PYTHON_BACKEND,
    STUB_NAME,
    ServerEndpoints,
    TritonInstall,
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
#: Most seconds ``HY3D_READY_TIMEOUT_S`` / ``HY3D_DRAIN_TIMEOUT_S`` may be set to.
MAX_READY_TIMEOUT_S = 24 * 3600
MAX_DRAIN_TIMEOUT_S = 24 * 3600
#: Largest ``HY3D_MAX_QUEUE_SIZE`` accepted.
MAX_QUEUE_SIZE = 100_000
#: Largest ``HY3D_CACHE_BYTES`` accepted (1 TiB).
MAX_CACHE_BYTES = 1 << 40
#: Seconds granted beyond tritonserver's exit timeout before it is killed.
STOP_GRACE_S = 30
#: Seconds between two checks of the server, the signals and the supervisor.
WAKE_INTERVAL_S = 0.5
#: What ``HY3D_MODEL_CONFIG`` may be (a file name stem: ``configs/<name>.pbtxt``).
_CONFIG_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
#: Linux prctl option: signal delivered to the child when its parent dies.
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class LaunchOptions:
    """Server settings, resolved from the environment."""

    endpoints: ServerEndpoints
    model_repository: Path
    ready_timeout_s: int
    log_verbose: int
    model_config: str | None = None
    drain_timeout_s: int = int(s.DRAIN_TIMEOUT_S.default)
    max_queue_size: int = int(s.MAX_QUEUE_SIZE.default)
    cache_bytes: int = int(s.CACHE_BYTES.default)

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
        model_config = s.lookup(s.MODEL_CONFIG, environ=environ)
        if model_config is not None and not _CONFIG_NAME.fullmatch(model_config):
            raise s.SettingsError(f"{s.MODEL_CONFIG.env}={model_config!r}: expected a config name such as "
                                  f"'gpu' (letters, digits, '_', '-', '.'), served from configs/<name>.pbtxt")
        return cls(endpoints, repository.resolve(), read_int(s.READY_TIMEOUT_S, 1, MAX_READY_TIMEOUT_S),
                   read_int(s.LOG_VERBOSE, 0, 3), model_config,
                   read_int(s.DRAIN_TIMEOUT_S, 1, MAX_DRAIN_TIMEOUT_S), read_int(s.MAX_QUEUE_SIZE, 0, MAX_QUEUE_SIZE),
                   read_int(s.CACHE_BYTES, 0, MAX_CACHE_BYTES))


def triton_flags(options: LaunchOptions, install: TritonInstall) -> list[str]:
    """tritonserver flags for ``options``: explicit model control, the response cache, the config name."""
    flags = ["--model-control-mode=explicit", "--load-model=*"]
    if options.cache_bytes > 0:
        flags += [f"--cache-config=local,size={options.cache_bytes}", f"--cache-directory={install.cache_directory}"]
    if options.model_config is not None:
        flags.append(f"--model-config-name={options.model_config}")
    return flags


def launch_command(options: LaunchOptions, install: TritonInstall, repository: Path, backends: Path,
                   extra_args: Sequence[str] = ()) -> list[str]:
    """The tritonserver command line :func:`run` starts for ``options`` (``repository``: the served copy)."""
    return server_command(install, repository, backends, options.endpoints, options.log_verbose,
                          (*triton_flags(options, install), *extra_args), options.drain_timeout_s)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def exit_status(returncode: int) -> int:
    """A shell-style exit status: the code itself, or 128 + N when the process died of signal N."""
    return 128 - returncode if returncode < 0 else returncode


def run(options: LaunchOptions, extra_args: Sequence[str] = ()) -> int:
    """Start tritonserver in the foreground and return the exit status (see the module docstring)."""
    install = find_triton_install()
    env = server_environment(install)
    backends = install.backends_dir if install.prebuilt_backends else assemble_backend_directory(install, BACKENDS_DIR)
    check_stub_libraries(backends / PYTHON_BACKEND / STUB_NAME, env)
    with ServedRepository(options.model_repository, options.max_queue_size) as repository:
        command = launch_command(options, install, repository, backends, extra_args)
        logger.info("serving %s (max_queue_size %d, response cache %d bytes) from %s", options.model_repository,
                    options.max_queue_size, options.cache_bytes, repository)
        logger.info("starting tritonserver: %s", " ".join(command))
        # Own session: a Ctrl-C on the terminal reaches tritonserver once, through the launcher, not twice.
        server = subprocess.Popen(command, env=env, preexec_fn=_die_with_parent, start_new_session=True)
        return _serve(server, options)


def _serve(server: subprocess.Popen[bytes], options: LaunchOptions) -> int:
    signals: list[int] = []
    wake = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        signals.append(signum)
        if len(signals) == 1:
            logger.info("received %s: draining, then stopping tritonserver", signal.Signals(signum).name)
        else:
            logger.info("received %s again: stopping tritonserver now", signal.Signals(signum).name)
            server.send_signal(signal.SIGTERM)
        wake.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    endpoints = options.endpoints
    if not wait_until_ready(endpoints.http_url, options.ready_timeout_s,
                            lambda: server.poll() is None and not signals):
        if server.poll() is None and not signals:
            logger.error("tritonserver not ready after %d s (%s); stopping it", options.ready_timeout_s,
                         s.READY_TIMEOUT_S.env)
            _stop(server, options)
            return EXIT_NOT_READY
        if server.poll() is None:  # a signal during start-up: nothing to drain yet
            _stop(server, options)
        return _exited(server)
    logger.info("tritonserver ready: http=%s grpc=%s metrics=%s (bound to %s)", endpoints.http_port,
                endpoints.grpc_port, endpoints.metrics_port, endpoints.bind_address)
    supervisor = Supervisor(server.pid, endpoints.http_url, options.ready_timeout_s, on_give_up=lambda _: wake.set())
    watcher = threading.Thread(target=supervisor.run, name="hy3d-supervisor", daemon=True)
    watcher.start()
    while server.poll() is None and not wake.wait(WAKE_INTERVAL_S):
        pass
    supervisor.stop()
    if server.poll() is not None:
        logger.error("tritonserver stopped unexpectedly")
        return _exited(server)
    if supervisor.gave_up is not None and not signals:
        _stop(server, options)
        _exited(server)
        return EXIT_STAGE_FAILED
    if len(signals) == 1:
        drain(endpoints.http_url, options.drain_timeout_s, abort=lambda: len(signals) > 1)
    _stop(server, options)
    return _exited(server)


def _stop(server: subprocess.Popen[bytes], options: LaunchOptions) -> None:
    """SIGTERM tritonserver; SIGKILL it when it outlives its exit timeout by :data:`STOP_GRACE_S`."""
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=options.drain_timeout_s + STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        logger.error("tritonserver still running %d s after SIGTERM; killing it", options.drain_timeout_s + STOP_GRACE_S)
        server.kill()
        server.wait()


def _exited(server: subprocess.Popen[bytes]) -> int:
    status = exit_status(server.wait())
    logger.info("tritonserver exited with status %d", status)
    return status


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
