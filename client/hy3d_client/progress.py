"""A spinner with the elapsed time, drawn on a terminal while the CLI waits; silent otherwise."""

from __future__ import annotations

import threading
import time
from typing import TextIO

#: Frames of the spinner.
SPINNER_FRAMES = "|/-\\"
#: Seconds between two redraws.
SPINNER_INTERVAL_S = 0.1
_CLEAR_LINE = "\r\x1b[K"


class Spinner:
    """Context manager drawing ``<frame> <label> <elapsed> s`` on ``stream`` from a thread.

    Draws only when ``stream.isatty()`` (so logs and pipes stay clean) unless ``enabled`` says otherwise;
    clears its line on exit.
    """

    def __init__(self, label: str, stream: TextIO, *, enabled: bool | None = None,
                 interval_s: float = SPINNER_INTERVAL_S):
        self.label = label
        self.stream = stream
        self.enabled = _is_tty(stream) if enabled is None else enabled
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0

    def __enter__(self) -> Spinner:
        self._started = time.monotonic()
        if self.enabled:
            self._thread = threading.Thread(target=self._run, name="hy3d-spinner", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self.stream.write(_CLEAR_LINE)
            self.stream.flush()

    @property
    def elapsed_s(self) -> float:
        """Seconds since the spinner started."""
        return time.monotonic() - self._started

    def _run(self) -> None:
        frame = 0
        while not self._stop.is_set():
            self.stream.write(f"{_CLEAR_LINE}{SPINNER_FRAMES[frame % len(SPINNER_FRAMES)]} {self.label} {self.elapsed_s:.1f} s")
            self.stream.flush()
            frame += 1
            self._stop.wait(self.interval_s)


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
