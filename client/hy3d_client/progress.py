"""How the CLI shows a request while it waits: a progress bar on a terminal, plain lines otherwise.

On a terminal, a ``tqdm`` bar with the phase (``shape:denoise``...), the percent, the elapsed time and
the estimated time left, redrawn while the server works; without progress reports (HTTP, uploads) it
shows the label and the elapsed time. When the stream is not a terminal, one plain line per phase (and
per :data:`LINE_STEP_PERCENT` percent), so that logs stay readable, from the first progress report on (a
request refused before it reaches the server prints only its error). ``mode="off"`` shows nothing.
"""

from __future__ import annotations

import threading
import time
from typing import Any, TextIO

from .stream import Progress

#: Display modes: a redrawn bar, plain lines, nothing.
MODES = ("bar", "lines", "off")
#: Seconds between two redraws of the bar (the elapsed time moves on while a phase runs).
REFRESH_INTERVAL_S = 0.5
#: In line mode, a new line at least every this many percent within a phase.
LINE_STEP_PERCENT = 10
#: Layout of the bar: phase, percent, bar, elapsed<left.
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}"
WAIT_FORMAT = "{desc}: {elapsed}"


def default_mode(stream: TextIO, quiet: bool = False) -> str:
    """``"off"`` when ``quiet``, ``"bar"`` on a terminal, else ``"lines"``."""
    if quiet:
        return "off"
    return "bar" if _is_tty(stream) else "lines"


class ProgressDisplay:
    """Context manager showing one request's progress on ``stream``; feed it with :meth:`update`.

    ``label`` says what is waited for (e.g. ``generating on host:8001``); ``determinate`` is false when
    no progress reports will come (the bar then shows the elapsed time only).
    """

    def __init__(self, label: str, stream: TextIO, *, mode: str | None = None, determinate: bool = True,
                 refresh_interval_s: float = REFRESH_INTERVAL_S):
        self.label = label
        self.stream = stream
        self.mode = default_mode(stream) if mode is None else mode
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        self.determinate = determinate
        self.refresh_interval_s = refresh_interval_s
        self._bar: Any = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0
        self._last_line: tuple[str, int] | None = None

    def __enter__(self) -> ProgressDisplay:
        self._started = time.monotonic()
        if self.mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=100 if self.determinate else None, desc=self.label, file=self.stream,
                             bar_format=BAR_FORMAT if self.determinate else WAIT_FORMAT, smoothing=0,
                             dynamic_ncols=True, leave=False, mininterval=0)
            self._thread = threading.Thread(target=self._refresh, name="hy3d-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type: object, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._bar is not None:
            with self._lock:
                self._bar.close()
        if self.mode == "lines" and self._last_line is not None:
            outcome = "done" if exc_type is None else "stopped"
            self._write_line(f"{self.label}: {outcome} after {self.elapsed_s:.1f} s")

    @property
    def elapsed_s(self) -> float:
        """Seconds since the display started."""
        return time.monotonic() - self._started

    def update(self, progress: Progress) -> None:
        """Show ``progress`` (a report of the server)."""
        percent = int(max(0.0, min(1.0, progress.fraction)) * 100)
        if self._bar is not None:
            with self._lock:
                self._bar.set_description_str(progress.stage, refresh=False)
                if percent > self._bar.n:
                    self._bar.update(percent - self._bar.n)
                else:
                    self._bar.refresh()
        elif self.mode == "lines":
            line = (progress.stage, percent // LINE_STEP_PERCENT)
            if self._last_line is None:  # the first report: the request reached the server
                self._write_line(f"{self.label} ...")
            if line != self._last_line:
                self._last_line = line
                self._write_line(f"{progress.stage}: {percent}% after {progress.elapsed_s:.1f} s")

    def _refresh(self) -> None:
        while not self._stop.wait(self.refresh_interval_s):
            with self._lock:
                self._bar.refresh()

    def _write_line(self, text: str) -> None:
        self.stream.write(f"hy3d-client: {text}\n")
        self.stream.flush()


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Spinner(ProgressDisplay):
    """A wait without progress reports (an upload, a texturing call): the label and the elapsed time on
    a terminal, nothing otherwise (or as ``enabled`` says)."""

    def __init__(self, label: str, stream: TextIO, *, enabled: bool | None = None,
                 interval_s: float = REFRESH_INTERVAL_S):
        show = _is_tty(stream) if enabled is None else enabled
        super().__init__(label, stream, mode="bar" if show else "off", determinate=False,
                         refresh_interval_s=interval_s)
