"""The streaming orchestrator behind ``hy3d_stream``: the ensemble's steps, called one by one, with progress.

:func:`run_stream` runs one request: it calls the stage models in the order and with the tensor maps of
``hy3d_ensemble``'s ``ensemble_scheduling`` (read from its config, so both models always do the same
work with the same weights), gives each stage the request's progress channel, and turns the steps the
stage reports into progress responses. Triton itself is reached only through the callables it is given,
so this runs and is tested without Triton.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hy3d_client import contract

from .bls import StageError
from .errors import ErrorKind
from .progress import (
    PROGRESS_CHANNEL_INPUT,
    ProgressListener,
    StepEvent,
    StreamProgress,
    plan_phases,
)
from .tensors import bytes_tensor, scalar_tensor

logger = logging.getLogger("hy3d_serving.stream")

#: Seconds between two looks at the progress channel and at the stream's cancellation.
POLL_INTERVAL_S = 0.05
#: Outputs of the final response, besides PROGRESS.
FINAL_OUTPUTS = (contract.GLB_OUTPUT, contract.TEXTURED_OUTPUT, contract.SEED_OUTPUT, contract.ENGINE_OUTPUT)


@dataclass(frozen=True)
class EnsembleStep:
    """One step of the ensemble: a stage model and its tensor maps (stage tensor -> ensemble tensor)."""

    model: str
    input_map: Mapping[str, str]
    output_map: Mapping[str, str]


#: ``call_stage(model, inputs, output_names, request_id) -> outputs``; raises :class:`StageError`.
CallStage = Callable[[str, dict[str, np.ndarray], list[str], str], dict[str, np.ndarray]]
#: ``send_progress(phase, fraction)``: one progress response.
SendProgress = Callable[[str, float], None]


def read_ensemble_steps(config_path: Path) -> list[EnsembleStep]:
    """The steps of the ensemble whose ``config.pbtxt`` is ``config_path``, in order."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    config = model_config_pb2.ModelConfig()
    text_format.Parse(config_path.read_text(), config)
    return [EnsembleStep(step.model_name, dict(step.input_map), dict(step.output_map))
            for step in config.ensemble_scheduling.step]


@dataclass
class StreamOutcome:
    """How a streamed request ended: the final outputs, or cancelled, or a stage's error."""

    outputs: dict[str, np.ndarray] | None = None
    cancelled_at: str | None = None
    cancelled_phase: str = ""  # the last phase reported before the cancel ("" if none)
    failure: StageError | None = None


def run_stream(steps: list[EnsembleStep], inputs: Mapping[str, np.ndarray], *, request_id: str,
               call_stage: CallStage, send_progress: SendProgress, is_cancelled: Callable[[], bool],
               executor: ThreadPoolExecutor) -> StreamOutcome:
    """Run the ensemble's ``steps`` on the request's ``inputs``, streaming progress.

    Each stage runs on ``executor`` while this thread relays the stage's steps as progress (fractions
    never decrease; a phase the engine does not have is reported complete when its stage ends) and
    watches ``is_cancelled``. A cancel reaches the running stage through the channel and stops it at its
    next step boundary; no later stage is started. Returns the outcome; never raises for a stage error.
    """
    tensors: dict[str, np.ndarray] = dict(inputs)
    progress = StreamProgress(plan_phases(_texture_requested(inputs)))
    listener = ProgressListener()
    last_sent: StepEvent | None = None

    def relay(responses: list[tuple[StepEvent, float]]) -> None:
        nonlocal last_sent
        for event, fraction in responses:
            if event != last_sent:
                send_progress(event.phase, fraction)
                last_sent = event

    def relay_steps(events: list[StepEvent]) -> None:
        for event in events:
            relay(progress.advance(event))

    try:
        for step in steps:
            if is_cancelled():
                return StreamOutcome(cancelled_at=f"before {step.model}", cancelled_phase=_phase(last_sent))
            stage_inputs = {name: tensors[source] for name, source in step.input_map.items() if source in tensors}
            stage_inputs[PROGRESS_CHANNEL_INPUT] = bytes_tensor(listener.name)
            future: Future = executor.submit(call_stage, step.model, stage_inputs, list(step.output_map),
                                             request_id)
            cancelled = False
            while not future.done():
                relay_steps(listener.receive(POLL_INTERVAL_S))
                if not cancelled and is_cancelled():
                    cancelled = True
                    listener.cancel()
                    logger.info("stream cancelled by the client during %s; telling the stage", step.model)
            relay_steps(listener.receive(0.0))
            try:
                outputs = future.result()
            except StageError as failure:
                if cancelled or failure.kind is ErrorKind.CANCELLED:
                    return StreamOutcome(cancelled_at=f"{step.model} after {_describe(last_sent)}",
                                         cancelled_phase=_phase(last_sent))
                return StreamOutcome(failure=failure)
            if cancelled:  # the stage finished before it saw the cancel
                return StreamOutcome(cancelled_at=f"the end of {step.model}", cancelled_phase=_phase(last_sent))
            relay(progress.finish_stage(step.model))
            tensors.update({source: outputs[name] for name, source in step.output_map.items()})
    finally:
        listener.close()
    outputs = {name: tensors[name] for name in FINAL_OUTPUTS}
    outputs[contract.PROGRESS_OUTPUT] = scalar_tensor(1.0, "FP32")
    return StreamOutcome(outputs=outputs)


def progress_outputs(phase: str, fraction: float) -> dict[str, np.ndarray]:
    """The tensors of one progress response: STAGE BYTES [1] and PROGRESS FP32 [1]."""
    return {contract.STAGE_OUTPUT: bytes_tensor(phase), contract.PROGRESS_OUTPUT: scalar_tensor(fraction, "FP32")}


def _texture_requested(inputs: Mapping[str, np.ndarray]) -> bool:
    """TEXTURE as sent, for the progress plan (a malformed value is refused by preprocess anyway)."""
    parameter = contract.PARAMETERS_BY_NAME["TEXTURE"]
    tensor = inputs.get(parameter.name)
    try:
        return bool(parameter.default if tensor is None else parameter.coerce(tensor))
    except contract.ContractError:
        return bool(parameter.default)


def _phase(event: StepEvent | None) -> str:
    return "" if event is None else event.phase


def _describe(event: StepEvent | None) -> str:
    return "no step" if event is None else f"{event.phase} {event.done}/{event.total}"
