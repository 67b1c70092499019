"""Self-healing: notice a stage whose Python backend stub died and reload it through Triton.

Triton 2.51 neither restarts a killed stub nor reports it: the health endpoints stay 200 and every
request to that stage fails with ``Stub process '<instance>' is not healthy``. The supervisor watches
the stub processes themselves (children of tritonserver, found in ``/proc``): one that is gone or a
zombie means its model is broken. It then

1. logs ``stage <model>: stub <instance> (pid N) died``, and unloads the model, which takes the
   ensembles that use it down with it: readiness (``/v2/health/ready``) is false from here on;
2. loads the model again (explicit model control): fresh stubs, the ensembles come back, readiness
   returns; it logs ``stage <model> reloaded in X s``, and removes the dead stub's ``/dev/shm`` region;
3. after :data:`MAX_RELOAD_ATTEMPTS` failed reloads in a row it gives up, and the launcher stops the
   server and exits with :data:`EXIT_STAGE_FAILED`, for the orchestrator to restart it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import model_control
from .triton_runtime import STUB_NAME

logger = logging.getLogger("hy3d_tooling.supervisor")

#: Seconds between two looks at the stub processes.
CHECK_INTERVAL_S = 1.0
#: Reloads tried in a row for one broken stage before the supervisor gives up.
MAX_RELOAD_ATTEMPTS = 3
#: Exit status of ``scripts/serve`` when a broken stage could not be reloaded.
EXIT_STAGE_FAILED = 4
#: Where the Python backend keeps each stub's shared-memory region.
SHM_DIR = Path("/dev/shm")
PROC_DIR = Path("/proc")
# Positions in the stub's command line: model.py path, shm region name, ..., instance name.
_ARG_MODEL_PATH, _ARG_SHM_REGION, _ARG_INSTANCE = 1, 2, 8


@dataclass(frozen=True)
class Stub:
    """One Python backend stub process: the model instance it runs and its shared-memory region."""

    pid: int
    model: str
    instance: str
    shm_region: str


def _read_stat(pid: int) -> tuple[str, int] | None:
    """``(state, parent pid)`` of process ``pid`` from ``/proc/<pid>/stat``; None when it is gone."""
    try:
        stat = (PROC_DIR / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses
    return fields[0], int(fields[1])


def is_alive(pid: int) -> bool:
    """Whether ``pid`` runs: it exists and is not a zombie (Triton does not reap a killed stub)."""
    stat = _read_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def children_of(pid: int) -> list[int]:
    """Pids of the live (not zombie) processes whose parent is ``pid``."""
    children = []
    for entry in PROC_DIR.iterdir():
        if entry.name.isdigit():
            stat = _read_stat(int(entry.name))
            if stat is not None and stat[1] == pid and stat[0] not in ("Z", "X"):
                children.append(int(entry.name))
    return sorted(children)


def command_line(pid: int) -> list[str]:
    """The arguments of process ``pid`` (empty when it is gone)."""
    try:
        return [arg.decode(errors="replace") for arg in (PROC_DIR / str(pid) / "cmdline").read_bytes().split(b"\0")]
    except OSError:
        return []


def stubs_of(server_pid: int) -> list[Stub]:
    """The live Python backend stubs whose parent is ``server_pid``."""
    found = []
    for pid in children_of(server_pid):
        args = command_line(pid)
        if len(args) <= _ARG_INSTANCE or not args[0].endswith(STUB_NAME):
            continue
        model_path = Path(args[_ARG_MODEL_PATH])  # <repository>/<model>/<version>/model.py
        found.append(Stub(pid, model_path.parent.parent.name, args[_ARG_INSTANCE], args[_ARG_SHM_REGION]))
    return found


class Supervisor:
    """Watches the stubs of one tritonserver and reloads a broken stage (see the module docstring).

    ``run()`` loops until :meth:`stop` or until it gives up; ``gave_up`` then tells which. ``paused``
    (an event) suspends reloads, e.g. while the server drains.
    """

    def __init__(self, server_pid: int, http_url: str, load_timeout_s: float,
                 interval_s: float = CHECK_INTERVAL_S, on_give_up: Callable[[str], None] | None = None):
        self.server_pid = server_pid
        self.http_url = http_url
        self.load_timeout_s = load_timeout_s
        self.interval_s = interval_s
        self.on_give_up = on_give_up
        self.stubs: list[Stub] = []
        self.reloads = 0
        self.gave_up: str | None = None
        self.paused = threading.Event()
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Record the stubs of the ready server, then check them every ``interval_s`` seconds."""
        self.stubs = stubs_of(self.server_pid)
        logger.info("supervising %d stage stubs: %s", len(self.stubs),
                    ", ".join(f"{stub.instance} (pid {stub.pid})" for stub in self.stubs))
        while not self._stop.wait(self.interval_s):
            if self.paused.is_set():
                continue
            dead = [stub for stub in self.stubs if not is_alive(stub.pid)]
            for model in sorted({stub.model for stub in dead}):
                if self._stop.is_set() or self.paused.is_set():
                    return
                if not self.heal(model, [stub for stub in dead if stub.model == model]):
                    return

    def heal(self, model: str, dead: list[Stub]) -> bool:
        """Reload ``model`` whose ``dead`` stubs died; False when every attempt failed (then gave up)."""
        for stub in dead:
            logger.error("stage %s: stub %s (pid %d) died; readiness is false until %s is reloaded",
                         model, stub.instance, stub.pid, model)
        started = time.monotonic()
        for attempt in range(1, MAX_RELOAD_ATTEMPTS + 1):
            try:
                model_control.unload(self.http_url, model)
                model_control.load(self.http_url, model, self.load_timeout_s)
            except model_control.ModelControlError as error:
                logger.error("stage %s: reload attempt %d of %d failed: %s", model, attempt,
                             MAX_RELOAD_ATTEMPTS, error)
                continue
            self.reloads += 1
            self.stubs = stubs_of(self.server_pid)
            for stub in dead:
                (SHM_DIR / stub.shm_region).unlink(missing_ok=True)
            logger.info("stage %s reloaded in %.1f s; ready again", model, time.monotonic() - started)
            return True
        self.gave_up = f"stage {model} could not be reloaded after {MAX_RELOAD_ATTEMPTS} attempts"
        logger.error("%s; stopping the server (exit status %d)", self.gave_up, EXIT_STAGE_FAILED)
        if self.on_give_up is not None:
            self.on_give_up(self.gave_up)
        return False
