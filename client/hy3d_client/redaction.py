"""Keep credentials out of messages and logs.

Secrets are registered once (when R2 settings are loaded); :func:`redact` replaces each of them in
a text, and :func:`protect_logs` does the same on every log record of this package and of the
libraries that talk to the store (botocore logs the access key id at DEBUG).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

#: What a secret is replaced with.
REDACTED = "***"

#: Logger families whose records may carry credentials: their messages are redacted.
PROTECTED_LOGGER_PREFIXES = ("hy3d_client", "botocore", "boto3", "s3transfer", "urllib3")

_lock = threading.Lock()
_secrets: set[str] = set()


def register_secrets(secrets: Iterable[str | None]) -> None:
    """Remember ``secrets`` (empty values ignored) so that :func:`redact` removes them from now on."""
    with _lock:
        _secrets.update(s for s in secrets if s)
    protect_logs()


def redact(text: str) -> str:
    """Return ``text`` with every registered secret replaced by ``***`` (longest secrets first)."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _redact_record(record: logging.LogRecord) -> None:
    """Rewrite ``record``'s message (and its traceback text) with the secrets redacted."""
    try:
        message = record.getMessage()
    except Exception:  # a malformed record: let logging report it as usual
        return
    cleaned = redact(message)
    if cleaned != message:
        record.msg, record.args = cleaned, None
    if record.exc_info and record.exc_info[0] is not None:
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))


_installed = False


def protect_logs() -> None:
    """Redact every record of the loggers under :data:`PROTECTED_LOGGER_PREFIXES`, now and later.

    Wraps the logging record factory (once; the previous factory is kept and called first), so
    loggers created after this call are covered too. Called by :func:`register_secrets`.
    """
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
        previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if _secrets and record.name.split(".")[0] in PROTECTED_LOGGER_PREFIXES:
            _redact_record(record)
        return record

    logging.setLogRecordFactory(factory)
