"""Progress display promises: a real bar on a terminal (phase, percent, elapsed, ETA), plain lines
otherwise, nothing when quiet; and the worker forwards progress to the platform's SDK when importable."""

from __future__ import annotations

import io
import sys
import time
import types

import pytest
from hy3d_client.progress import ProgressDisplay, Spinner, default_mode
from hy3d_client.stream import Progress
from hy3d_client.worker import platform_progress


class Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def reports() -> list[Progress]:
    return [Progress("preprocess", 0.0, 0.0), Progress("preprocess", 0.02, 0.1),
            Progress("shape:denoise", 0.10, 0.5), Progress("shape:denoise", 0.25, 1.0),
            Progress("paint:diffusion", 0.60, 2.0), Progress("export", 1.0, 3.0)]


def test_the_mode_follows_the_stream_unless_quiet():
    assert default_mode(Terminal()) == "bar"
    assert default_mode(io.StringIO()) == "lines"
    assert default_mode(Terminal(), quiet=True) == "off"


def test_a_terminal_gets_a_bar_with_the_phase_percent_elapsed_and_eta():
    stream = Terminal()
    with ProgressDisplay("generating", stream, refresh_interval_s=0.01) as display:
        for report in reports()[:5]:
            display.update(report)
            time.sleep(0.02)
        time.sleep(0.05)
    frames = [frame for frame in stream.getvalue().split("\r") if frame.strip()]
    last = next(frame for frame in reversed(frames) if "paint:diffusion" in frame)
    assert " 60%|" in last
    assert "<" in last and "?" not in last.split("<")[1]  # an ETA once progress is known
    assert any("shape:denoise:  25%|" in frame for frame in frames)


def test_without_progress_reports_a_terminal_sees_the_label_and_the_time_moving_on():
    stream = Terminal()
    with Spinner("uploading", stream, interval_s=0.01):
        time.sleep(0.1)
    frames = {frame.strip() for frame in stream.getvalue().split("\r") if frame.strip().startswith("uploading")}
    assert frames and all(frame.startswith("uploading: 00:0") for frame in frames)


def test_a_pipe_gets_one_plain_line_per_phase_and_ten_percent():
    stream = io.StringIO()
    with ProgressDisplay("generating on host:8001", stream) as display:
        for report in reports():
            display.update(report)
    lines = stream.getvalue().splitlines()
    assert lines == [
        "hy3d-client: generating on host:8001 ...",
        "hy3d-client: preprocess: 0% after 0.0 s",
        "hy3d-client: shape:denoise: 10% after 0.5 s",
        "hy3d-client: shape:denoise: 25% after 1.0 s",
        "hy3d-client: paint:diffusion: 60% after 2.0 s",
        "hy3d-client: export: 100% after 3.0 s",
        lines[-1],
    ]
    assert lines[-1].startswith("hy3d-client: generating on host:8001: done after ")


def test_quiet_shows_nothing():
    stream = Terminal()
    with ProgressDisplay("generating", stream, mode="off") as display:
        for report in reports():
            display.update(report)
    assert stream.getvalue() == ""


def test_the_worker_forwards_progress_to_the_platform_sdk_when_importable(monkeypatch):
    updates: list = []
    serverless = types.ModuleType("runpod.serverless")
    serverless.progress_update = lambda job, progress: updates.append((job["id"], progress))
    runpod = types.ModuleType("runpod")
    runpod.serverless = serverless
    monkeypatch.setitem(sys.modules, "runpod", runpod)
    monkeypatch.setitem(sys.modules, "runpod.serverless", serverless)
    forward = platform_progress({"id": "job-1", "input": {}})
    for report in reports() + [Progress("export", 1.0, 3.1)]:
        forward(report)
    assert updates == [("job-1", {"stage": "preprocess", "percent": 0}), ("job-1", {"stage": "preprocess", "percent": 2}),
                       ("job-1", {"stage": "shape:denoise", "percent": 10}),
                       ("job-1", {"stage": "shape:denoise", "percent": 25}),
                       ("job-1", {"stage": "paint:diffusion", "percent": 60}),
                       ("job-1", {"stage": "export", "percent": 100})]


def test_the_worker_skips_progress_without_the_platform_sdk(monkeypatch):
    monkeypatch.setitem(sys.modules, "runpod", None)  # import fails
    assert platform_progress({"id": "job-1", "input": {}}) is None


@pytest.mark.parametrize("job", [{"input": {}}, "not a job"])
def test_the_worker_skips_progress_for_a_job_without_an_id(monkeypatch, job):
    serverless = types.ModuleType("runpod.serverless")
    serverless.progress_update = lambda job, progress: None
    monkeypatch.setitem(sys.modules, "runpod", types.ModuleType("runpod"))
    monkeypatch.setitem(sys.modules, "runpod.serverless", serverless)
    assert platform_progress(job) is None
