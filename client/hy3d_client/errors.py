"""Exceptions raised by the client. Every message is safe to show: credentials are redacted.

``ContractError`` (a request that breaks the contract) lives in :mod:`hy3d_client.contract` and is
re-exported by the package; the classes here cover everything that happens after validation.
"""

from __future__ import annotations


class Hy3DError(Exception):
    """Base class of the client's own failures (not raised for contract violations)."""


class ConfigurationError(Hy3DError):
    """A setting (argument or environment variable) is missing or invalid. ``setting`` names it."""

    def __init__(self, setting: str, message: str):
        super().__init__(f"{setting}: {message}")
        self.setting = setting
        self.problem = message


class ServerError(Hy3DError):
    """Triton answered with an error, or could not be reached after every retry.

    ``status`` is Triton's status (``"StatusCode.INTERNAL"`` over gRPC, ``"500"`` over HTTP, or the
    name of the network failure); ``transient`` tells whether the last failure was of a retryable kind.
    """

    def __init__(self, message: str, *, status: str = "", transient: bool = False):
        super().__init__(message)
        self.status = status
        self.transient = transient


class UploadError(Hy3DError):
    """The GLB could not be stored or its download link could not be made."""
