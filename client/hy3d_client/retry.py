"""Retry failures with exponential backoff; the caller says which failures are safe to retry.

Towards Triton that is only what cannot have reached a model (see :mod:`hy3d_client.transport`); a
timeout is never retried there, so that a slow request is not sent again while it still runs.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from .errors import ConfigurationError
from .redaction import redact

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Attempts per call (the first one included), for Triton and for the store alike.
DEFAULT_RETRY_ATTEMPTS = 4
#: Wait before the first retry, in seconds; each later wait is multiplied by the factor below.
DEFAULT_RETRY_INITIAL_DELAY_S = 1.0
#: Growth factor of the wait between attempts.
DEFAULT_RETRY_BACKOFF_FACTOR = 2.0
#: Longest wait between two attempts, in seconds.
DEFAULT_RETRY_MAX_DELAY_S = 30.0
#: Upper bound accepted for the attempts setting (a typo should not mean hours of retrying).
MAX_RETRY_ATTEMPTS = 20

RETRY_ATTEMPTS_ENV = "HY3D_RETRY_ATTEMPTS"
RETRY_INITIAL_DELAY_ENV = "HY3D_RETRY_INITIAL_DELAY_S"
RETRY_MAX_DELAY_ENV = "HY3D_RETRY_MAX_DELAY_S"
_FIELD_ENV = {"attempts": RETRY_ATTEMPTS_ENV, "initial_delay_s": RETRY_INITIAL_DELAY_ENV, "max_delay_s": RETRY_MAX_DELAY_ENV}


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a transient failure is retried.

    Attempt ``n`` (from 1) that fails transiently is followed by a wait of
    ``min(initial_delay_s * backoff_factor ** (n - 1), max_delay_s)`` seconds.
    """

    attempts: int = DEFAULT_RETRY_ATTEMPTS
    initial_delay_s: float = DEFAULT_RETRY_INITIAL_DELAY_S
    backoff_factor: float = DEFAULT_RETRY_BACKOFF_FACTOR
    max_delay_s: float = DEFAULT_RETRY_MAX_DELAY_S

    def __post_init__(self) -> None:
        if not 1 <= self.attempts <= MAX_RETRY_ATTEMPTS:
            raise ConfigurationError("attempts", f"expected an integer in [1, {MAX_RETRY_ATTEMPTS}], got {self.attempts!r}")
        for name in ("initial_delay_s", "max_delay_s"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ConfigurationError(name, f"expected a finite delay >= 0 s, got {getattr(self, name)!r}")
        if not (math.isfinite(self.backoff_factor) and self.backoff_factor >= 1):
            raise ConfigurationError("backoff_factor", f"expected a factor >= 1, got {self.backoff_factor!r}")

    def delay_after(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (counted from 1)."""
        return min(self.initial_delay_s * self.backoff_factor ** (attempt - 1), self.max_delay_s)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RetryPolicy:
        """The policy given by ``HY3D_RETRY_ATTEMPTS``, ``HY3D_RETRY_INITIAL_DELAY_S`` and
        ``HY3D_RETRY_MAX_DELAY_S`` (each optional). Raises ``ConfigurationError`` naming a bad one."""
        environ = os.environ if environ is None else environ
        values: dict[str, float | int] = {}
        for field, env in _FIELD_ENV.items():
            kind = int if field == "attempts" else float
            raw = environ.get(env)
            if raw is None or raw == "":
                continue
            try:
                values[field] = kind(raw)
            except ValueError:
                raise ConfigurationError(env, f"expected {'an integer' if kind is int else 'a number'}, got {raw!r}") from None
        try:
            return cls(**values)
        except ConfigurationError as error:
            env = _FIELD_ENV.get(error.setting, error.setting)
            raise ConfigurationError(env, error.problem) from None


def call_with_retries(
    operation: Callable[[], T],
    *,
    is_transient: Callable[[BaseException], bool],
    policy: RetryPolicy,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``operation``; retry it while it raises an exception that ``is_transient`` accepts.

    ``what`` names the operation in log lines. The last exception (transient or not) propagates
    unchanged once the attempts are spent.
    """
    for attempt in range(1, policy.attempts + 1):
        try:
            return operation()
        except Exception as error:
            if attempt == policy.attempts or not is_transient(error):
                raise
            delay = policy.delay_after(attempt)
            logger.warning(
                "%s failed (attempt %d of %d): %s; retrying in %.2f s",
                what, attempt, policy.attempts, redact(describe_exception(error)), delay,
            )
            sleep(delay)
    raise AssertionError("unreachable: the loop returns or raises")


def gave_up_note(policy: RetryPolicy) -> str:
    """``" (gave up after N attempts)"``: appended to a transient failure that outlived the retries."""
    return f" (gave up after {policy.attempts} attempt{'s' if policy.attempts > 1 else ''})"


def describe_exception(error: BaseException) -> str:
    """``"TypeName: message"`` (or just the type name when the message is empty)."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
