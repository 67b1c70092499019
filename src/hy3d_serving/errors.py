"""Mapping of exceptions to the error response a stage sends back (one response per request, always)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from hy3d_client.contract import ContractError

#: Longest exception text copied into an error response, in characters (the rest is in the log).
MAX_ERROR_DETAIL_CHARS = 500


class ErrorKind(str, Enum):
    """Status of an error response: the client's fault (HTTP 400) or ours (HTTP 500)."""

    INVALID_ARGUMENT = "INVALID_ARG"
    INTERNAL = "INTERNAL"
    CANCELLED = "CANCELLED"


class EngineError(RuntimeError):
    """An engine could not produce a result for valid inputs (e.g. no surface found)."""


class RequestCancelled(Exception):  # noqa: N818 (the name the libraries and RULES use)
    """The client cancelled the request (or its stream): raised by a step callback at a step boundary.

    ``where`` says where the work stopped, e.g. ``"shape:denoise 3/5"``. Libraries let it propagate.
    """

    def __init__(self, where: str = ""):
        super().__init__(f"cancelled at {where}" if where else "cancelled")
        self.where = where


@dataclass(frozen=True)
class ErrorReply:
    """What the client is told: the kind (status) and a message naming the stage and the cause."""

    kind: ErrorKind
    message: str


def error_reply(stage: str, error: BaseException) -> ErrorReply:
    """Turn an exception raised while a stage handled a request into the reply sent to the client.

    A :class:`~hy3d_client.contract.ContractError` becomes an invalid-argument reply whose message
    names the offending input and what is allowed; :class:`RequestCancelled` a cancelled reply saying
    where the work stopped; anything else an internal error naming the stage.
    """
    if isinstance(error, ContractError):
        return ErrorReply(ErrorKind.INVALID_ARGUMENT, f"{stage}: invalid input {error}")
    if isinstance(error, RequestCancelled):
        return ErrorReply(ErrorKind.CANCELLED, f"{stage}: request {error}")
    detail = str(error)
    if len(detail) > MAX_ERROR_DETAIL_CHARS:
        detail = detail[:MAX_ERROR_DETAIL_CHARS] + "..."
    if isinstance(error, EngineError):
        return ErrorReply(ErrorKind.INTERNAL, f"{stage} failed: {detail}")
    return ErrorReply(ErrorKind.INTERNAL, f"{stage} failed: {type(error).__name__}: {detail}")
