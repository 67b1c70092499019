"""Progress promises: a spinner with the elapsed time on a terminal, nothing at all otherwise."""

from __future__ import annotations

import io
import time

from hy3d_client.progress import Spinner


class Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_spinner_with_the_elapsed_time_then_a_clean_line():
    stream = Terminal()
    with Spinner("generating", stream, interval_s=0.02):
        time.sleep(0.15)
    text = stream.getvalue()
    frames = [frame for frame in text.split("\r\x1b[K") if frame]
    assert len(frames) >= 3
    assert all(frame.endswith(" s") and " generating " in frame for frame in frames)
    assert frames[-1] != frames[0]  # the time moves on
    assert text.endswith("\r\x1b[K")  # the line is cleared at the end


def test_a_pipe_or_file_gets_nothing():
    stream = io.StringIO()
    with Spinner("generating", stream, interval_s=0.01):
        time.sleep(0.05)
    assert stream.getvalue() == ""
