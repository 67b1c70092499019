"""Logging for the stages: Python ``logging`` routed into Triton's log, with the request id on every line.

While a stage handles a request, :func:`request_context` marks the work with the stage name and the
request id; every record logged meanwhile, by this package or by the engine libraries, is prefixed with
``[stage request=ID]`` in Triton's log.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_request_tag: contextvars.ContextVar[str] = contextvars.ContextVar("hy3d_request_tag", default="")


@contextmanager
def request_context(stage: str, request_id: str | None = None) -> Iterator[None]:
    """Within the block, log lines carry ``[stage request=request_id]`` (``[stage]`` outside a request)."""
    token = _request_tag.set(f"[{stage} request={request_id}] " if request_id else f"[{stage}] ")
    try:
        yield
    finally:
        _request_tag.reset(token)


def current_request_tag() -> str:
    """``"[stage request=ID] "`` inside :func:`request_context`, else ``""``."""
    return _request_tag.get()


class TritonLogHandler(logging.Handler):
    """Forwards ``logging`` records to the Python backend's ``pb_utils.Logger`` (Triton's own log)."""

    def __init__(self, triton_logger: Any):
        super().__init__()
        self._triton_logger = triton_logger
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = current_request_tag() + self.format(record)
            if record.levelno >= logging.ERROR:
                self._triton_logger.log_error(message)
            elif record.levelno >= logging.WARNING:
                self._triton_logger.log_warn(message)
            elif record.levelno >= logging.INFO:
                self._triton_logger.log_info(message)
            else:
                self._triton_logger.log_verbose(message)
        except Exception:  # a log line must never fail a request
            self.handleError(record)


def install_triton_logging(triton_logger: Any, level: int = logging.INFO) -> None:
    """Route the root logger into Triton's log (once per process; later calls do nothing)."""
    root = logging.getLogger()
    if any(isinstance(handler, TritonLogHandler) for handler in root.handlers):
        return
    root.addHandler(TritonLogHandler(triton_logger))
    root.setLevel(level)


@contextmanager
def timed(log: logging.Logger, step: str) -> Iterator[None]:
    """Log how long the ``with`` block took, in milliseconds, at INFO level (also when it raises)."""
    start = time.perf_counter()
    outcome = "failed"
    try:
        yield
        outcome = "done"
    finally:
        log.info("%s %s in %.1f ms", step, outcome, (time.perf_counter() - start) * 1000.0)
