"""Where and how to reach Triton: explicit arguments first, then the environment, then defaults."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

from .contract import ENSEMBLE_MODEL
from .errors import ConfigurationError

TRITON_URL_ENV = "HY3D_TRITON_URL"
TRITON_PROTOCOL_ENV = "HY3D_TRITON_PROTOCOL"
TRITON_TIMEOUT_ENV = "HY3D_TRITON_TIMEOUT_S"
TRITON_MODEL_ENV = "HY3D_TRITON_MODEL"

#: Supported protocols, the first one is the default.
PROTOCOLS = ("grpc", "http")
DEFAULT_PROTOCOL = PROTOCOLS[0]
#: Triton's standard ports: the default address depends on the protocol.
DEFAULT_TRITON_URLS = {"grpc": "localhost:8001", "http": "localhost:8000"}
#: How long one inference attempt may take, in seconds (a full textured asset takes minutes on CPU).
DEFAULT_TIMEOUT_S = 600.0
#: Largest accepted timeout, in seconds.
MAX_TIMEOUT_S = 3600.0
#: How long opening an HTTP connection may take, in seconds.
DEFAULT_CONNECT_TIMEOUT_S = 10.0
#: URL schemes accepted in front of ``HOST:PORT``; ``https`` turns TLS on.
URL_SCHEMES = ("http://", "https://", "grpc://", "grpcs://")


@dataclass(frozen=True)
class TritonSettings:
    """A resolved Triton address: ``url`` is ``HOST:PORT`` without a scheme."""

    url: str = DEFAULT_TRITON_URLS[DEFAULT_PROTOCOL]
    protocol: str = DEFAULT_PROTOCOL
    timeout_s: float = DEFAULT_TIMEOUT_S
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    model_name: str = ENSEMBLE_MODEL
    ssl: bool = False

    @classmethod
    def resolve(
        cls,
        url: str | None = None,
        protocol: str | None = None,
        timeout_s: float | None = None,
        model_name: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> TritonSettings:
        """Settings from the arguments, falling back on ``HY3D_TRITON_URL``, ``HY3D_TRITON_PROTOCOL``,
        ``HY3D_TRITON_TIMEOUT_S``, ``HY3D_TRITON_MODEL`` and the defaults.

        Raises ``ConfigurationError`` naming the argument or variable that is invalid.
        """
        environ = os.environ if environ is None else environ
        protocol_setting = "protocol" if protocol is not None else TRITON_PROTOCOL_ENV
        protocol = (protocol if protocol is not None else environ.get(TRITON_PROTOCOL_ENV) or DEFAULT_PROTOCOL)
        protocol = protocol.strip().lower()
        if protocol not in PROTOCOLS:
            raise ConfigurationError(protocol_setting, f"expected one of {', '.join(PROTOCOLS)}, got {protocol!r}")

        url_setting = "url" if url is not None else TRITON_URL_ENV
        url = url if url is not None else environ.get(TRITON_URL_ENV) or DEFAULT_TRITON_URLS[protocol]
        address, ssl = _split_url(url, url_setting)

        if timeout_s is None:
            timeout_s = _float_from_env(environ, TRITON_TIMEOUT_ENV, DEFAULT_TIMEOUT_S)
            timeout_setting = TRITON_TIMEOUT_ENV
        else:
            timeout_setting = "timeout_s"
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not (
            math.isfinite(timeout_s) and 0 < timeout_s <= MAX_TIMEOUT_S
        ):
            raise ConfigurationError(timeout_setting, f"expected seconds in (0, {MAX_TIMEOUT_S:g}], got {timeout_s!r}")

        model_name = model_name or environ.get(TRITON_MODEL_ENV) or ENSEMBLE_MODEL
        return cls(url=address, protocol=protocol, timeout_s=float(timeout_s), model_name=model_name, ssl=ssl)


def _split_url(url: str, setting: str) -> tuple[str, bool]:
    """``"https://host:8000"`` -> ``("host:8000", True)``; checks that a port is given."""
    url = url.strip()
    ssl = False
    lowered = url.lower()
    for scheme in URL_SCHEMES:
        if lowered.startswith(scheme):
            ssl = scheme in ("https://", "grpcs://")
            url = url[len(scheme):]
            break
    else:
        if "://" in url:
            raise ConfigurationError(setting, f"expected HOST:PORT, optionally after {', '.join(URL_SCHEMES)}; got {url!r}")
    url = url.rstrip("/")
    host, _, port = url.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in url:
        raise ConfigurationError(setting, f"expected HOST:PORT (e.g. {DEFAULT_TRITON_URLS[DEFAULT_PROTOCOL]}), got {url!r}")
    return url, ssl


def _float_from_env(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigurationError(name, f"expected a number of seconds, got {raw!r}") from None
