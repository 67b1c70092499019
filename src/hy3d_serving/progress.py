"""Progress of a request inside the stages, and the per-request channel that carries it to ``hy3d_stream``.

The channel is a Unix datagram socket in Linux's abstract namespace (no file, gone when closed): the
streaming orchestrator binds one under a fresh name (:class:`ProgressListener`) and passes the name to every
stage it calls as the optional ``PROGRESS_CHANNEL`` input. The stage's step callback
(:class:`StepMonitor`) sends one datagram per step, ``(phase, done, total)``, and checks for cancellation:
``request.is_cancelled()`` (the client went away) or a cancel datagram from the orchestrator (the stream
was cancelled). :class:`StreamProgress` turns the steps into one overall fraction, never decreasing.
"""

from __future__ import annotations

import json
import logging
import select
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from hy3d_client.contract import PHASES

from .errors import RequestCancelled

logger = logging.getLogger(__name__)

#: The optional BYTES [1] input of every stage: name of the progress channel of the request.
PROGRESS_CHANNEL_INPUT = "PROGRESS_CHANNEL"
#: Prefix of the channel names (abstract socket names; a uuid follows).
CHANNEL_PREFIX = "hy3d-progress-"
#: Largest datagram either side sends or reads, in bytes.
MAX_DATAGRAM_BYTES = 512
#: Longest channel name accepted from a request, in characters (the abstract-name limit is 107).
MAX_CHANNEL_NAME_CHARS = 100
#: What the orchestrator sends a stage to cancel the request it works on.
CANCEL_MESSAGE = b"cancel"

#: ``callback(phase, done, total)``: what the libraries call at every step boundary (see RULES / docs).
StepCallback = Callable[[str, int, int], None]

#: Phases each stage model runs, in order.
STAGE_PHASES: dict[str, tuple[str, ...]] = {
    "preprocess": ("preprocess",),
    "shape_dit": ("shape:denoise", "shape:decode", "shape:postprocess"),
    "paint_pbr": ("paint:uv", "paint:render", "paint:diffusion", "paint:upscale", "paint:bake", "export"),
}
#: Share of the whole request each phase stands for (rough GPU timings of the neural engines); the
#: shares of the phases a request runs are normalised to 1.
PHASE_WEIGHTS: dict[str, float] = {
    "preprocess": 0.02, "shape:denoise": 0.20, "shape:decode": 0.08, "shape:postprocess": 0.03,
    "paint:uv": 0.02, "paint:render": 0.03, "paint:diffusion": 0.35, "paint:upscale": 0.08,
    "paint:bake": 0.14, "export": 0.05,
}
#: Phases of an untextured request (paint_pbr only exports).
UNTEXTURED_PHASES = ("preprocess", "shape:denoise", "shape:decode", "shape:postprocess", "export")
assert set(PHASE_WEIGHTS) == set(PHASES)


@dataclass(frozen=True)
class StepEvent:
    """One step boundary: ``done`` of ``total`` steps of ``phase`` are finished."""

    phase: str
    done: int
    total: int

    def encode(self) -> bytes:
        return json.dumps([self.phase, self.done, self.total]).encode()

    @classmethod
    def decode(cls, datagram: bytes) -> StepEvent | None:
        """The event in ``datagram``, or None when it is not one (it is then ignored)."""
        try:
            phase, done, total = json.loads(datagram)
        except (ValueError, TypeError):
            return None
        if not (isinstance(phase, str) and isinstance(done, int) and isinstance(total, int)):
            return None
        return cls(phase, done, total)


class ProgressListener:
    """The orchestrator's end of a request's channel: receives the stages' steps, sends them the cancel."""

    def __init__(self) -> None:
        self.name = CHANNEL_PREFIX + uuid.uuid4().hex
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind("\0" + self.name)
        self._socket.setblocking(False)
        self._senders: set[Any] = set()
        self.cancelled = False

    def receive(self, timeout_s: float) -> list[StepEvent]:
        """The events that arrive within ``timeout_s`` (all those waiting, or [] after the timeout)."""
        readable, _, _ = select.select([self._socket], [], [], timeout_s)
        events: list[StepEvent] = []
        while readable:
            try:
                datagram, sender = self._socket.recvfrom(MAX_DATAGRAM_BYTES)
            except BlockingIOError:
                break
            if sender and sender not in self._senders:
                self._senders.add(sender)
                if self.cancelled:
                    self._send_cancel(sender)
            event = StepEvent.decode(datagram)
            if event is not None:
                events.append(event)
        return events

    def cancel(self) -> None:
        """Tell every stage that reported on this channel (and any that reports later) to stop."""
        self.cancelled = True
        for sender in self._senders:
            self._send_cancel(sender)

    def close(self) -> None:
        self._socket.close()

    def _send_cancel(self, sender: Any) -> None:
        try:
            self._socket.sendto(CANCEL_MESSAGE, sender)
        except OSError:  # the stage is gone already
            pass


class ProgressReporter:
    """A stage's end of a request's channel: sends steps, learns of a cancel. Never blocks."""

    def __init__(self, channel: str):
        self._address = "\0" + channel
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind("")  # autobind: an abstract address of its own, for the cancel answer
        self._socket.setblocking(False)
        self.cancelled = False

    def send(self, event: StepEvent) -> None:
        """Send ``event``; a listener that is gone means nobody waits for the result: cancelled."""
        try:
            self._socket.sendto(event.encode(), self._address)
        except BlockingIOError:  # the listener lags behind: this step is not shown, the next one is
            pass
        except (ConnectionRefusedError, FileNotFoundError):
            self.cancelled = True
        while True:
            try:
                if self._socket.recv(MAX_DATAGRAM_BYTES) == CANCEL_MESSAGE:
                    self.cancelled = True
            except (BlockingIOError, ConnectionRefusedError):
                break

    def close(self) -> None:
        self._socket.close()


def check_channel_name(name: str) -> str:
    """``name`` if it is a channel name this package made; raises ``ContractError`` otherwise."""
    from hy3d_client.contract import ContractError

    if not (name.startswith(CHANNEL_PREFIX) and len(name) <= MAX_CHANNEL_NAME_CHARS and name.isprintable()):
        raise ContractError(PROGRESS_CHANNEL_INPUT, f"expected a channel name made by hy3d_stream "
                                                    f"({CHANNEL_PREFIX}<hex>)")
    return name


class StepMonitor:
    """The step callback of one stage request: times phases, forwards steps, raises on cancellation.

    ``is_cancelled`` is the request's own check (``request.is_cancelled``); ``reporter`` the request's
    progress channel (or None); ``observe_phase(phase, seconds)`` records a finished phase's duration.
    Raises :class:`~hy3d_serving.errors.RequestCancelled` naming the phase and step it stopped at.
    """

    def __init__(self, *, is_cancelled: Callable[[], bool] | None = None, reporter: ProgressReporter | None = None,
                 observe_phase: Callable[[str, float], None] | None = None):
        self._is_cancelled = is_cancelled
        self._reporter = reporter
        self._observe_phase = observe_phase
        self._phase = ""
        self._phase_started = self._last_boundary = time.monotonic()
        self._finished: set[str] = set()
        self.last_step = ""

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        if phase != self._phase:
            self._phase, self._phase_started = phase, self._last_boundary
        if done >= total and phase not in self._finished:
            self._finished.add(phase)
            self._last_boundary = now
            if self._observe_phase is not None:
                self._observe_phase(phase, now - self._phase_started)
        self.last_step = f"{phase} {done}/{total}"
        if self._reporter is not None:
            self._reporter.send(StepEvent(phase, done, total))
        if self.cancelled():
            raise RequestCancelled(self.last_step)

    def cancelled(self) -> bool:
        """Whether the client cancelled the request or its stream."""
        if self._reporter is not None and self._reporter.cancelled:
            return True
        return bool(self._is_cancelled is not None and self._is_cancelled())


class StreamProgress:
    """Overall progress of one streamed request from the steps of its phases; never decreases."""

    def __init__(self, phases: Iterable[str]):
        self.phases = tuple(phases)
        total = sum(PHASE_WEIGHTS[phase] for phase in self.phases)
        self._weights = {phase: PHASE_WEIGHTS[phase] / total for phase in self.phases}
        self._fractions = {phase: 0.0 for phase in self.phases}
        self.seen: set[str] = set()
        self.value = 0.0

    def advance(self, event: StepEvent) -> list[tuple[StepEvent, float]]:
        """The progress responses ``event`` makes: ``(event, overall fraction)`` pairs, in order.

        A phase outside the plan gives none. Phases of the same stage that come before ``event``'s and
        reported nothing (the engine has no such phase) are first reported complete, so that the
        phases always appear in their order.
        """
        if event.phase not in self._fractions:
            return []
        stage_phases = next((phases for phases in STAGE_PHASES.values() if event.phase in phases), ())
        earlier = stage_phases[:stage_phases.index(event.phase)] if stage_phases else ()
        implied = [StepEvent(phase, 1, 1) for phase in earlier if phase in self._fractions and phase not in self.seen]
        return [(step, self._update(step)) for step in (*implied, event)]

    def finish_stage(self, stage: str) -> list[tuple[StepEvent, float]]:
        """The responses for the phases of ``stage`` in the plan that reported nothing, as complete (an
        engine without that phase, e.g. no diffusion in the built-in texture engine)."""
        return [(step, self._update(step)) for step in
                (StepEvent(phase, 1, 1) for phase in STAGE_PHASES.get(stage, ()))
                if step.phase in self._fractions and step.phase not in self.seen]

    def _update(self, event: StepEvent) -> float:
        self.seen.add(event.phase)
        fraction = min(max(event.done / event.total, 0.0), 1.0) if event.total > 0 else 1.0
        self._fractions[event.phase] = max(self._fractions[event.phase], fraction)
        self.value = max(self.value, min(1.0, sum(self._weights[p] * f for p, f in self._fractions.items())))
        return self.value


def plan_phases(texture: bool) -> tuple[str, ...]:
    """The phases a request runs: all of them when textured, else no ``paint:*`` phase."""
    return PHASES if texture else UNTEXTURED_PHASES
