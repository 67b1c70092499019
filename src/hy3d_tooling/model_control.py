"""Triton's model-repository API over HTTP (explicit model control): index, config, load and unload.

``scripts/serve`` runs tritonserver with ``--model-control-mode=explicit --load-model=*``, so that the
supervisor can reload one broken stage and the drain can unload the public models while the stages
finish the requests in flight.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

#: Seconds an index or config query may take.
QUERY_TIMEOUT_S = 10.0
#: Model states of Triton's repository index.
READY = "READY"
UNLOADING = "UNLOADING"


class ModelControlError(RuntimeError):
    """Triton refused or failed a repository request; the message carries Triton's answer."""


def _post(http_url: str, path: str, timeout_s: float, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body or {}).encode()
    request = urllib.request.Request(f"http://{http_url}{path}", data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
    return _send(request, timeout_s)


def _send(request: urllib.request.Request, timeout_s: float) -> Any:
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as reply:
            payload = reply.read()
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")
        try:
            detail = json.loads(detail).get("error", detail)
        except (ValueError, AttributeError):
            pass
        raise ModelControlError(f"{request.get_method()} {request.full_url}: HTTP {error.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as error:
        raise ModelControlError(f"{request.get_method()} {request.full_url}: {error}") from None
    return json.loads(payload) if payload.strip() else None


def repository_index(http_url: str) -> dict[str, str]:
    """``{model name: state}`` of every model in the repository (``READY``, ``UNLOADING``, ``UNAVAILABLE``...)."""
    entries = _post(http_url, "/v2/repository/index", QUERY_TIMEOUT_S) or []
    return {entry["name"]: entry.get("state", "") for entry in entries}


def model_config(http_url: str, model: str) -> dict[str, Any]:
    """The configuration Triton serves for ``model``, as JSON."""
    return _send(urllib.request.Request(f"http://{http_url}/v2/models/{model}/config"), QUERY_TIMEOUT_S)


def load(http_url: str, model: str, timeout_s: float) -> None:
    """(Re)load ``model`` and the ensembles that use it; returns once loaded, raises :class:`ModelControlError`."""
    _post(http_url, f"/v2/repository/models/{model}/load", timeout_s)


def unload(http_url: str, model: str) -> None:
    """Start unloading ``model``: it takes no new request; the ones in flight finish first (Triton's rule)."""
    _post(http_url, f"/v2/repository/models/{model}/unload", QUERY_TIMEOUT_S)


def entry_models(http_url: str) -> list[str]:
    """Ready models that no ensemble uses as a step: what clients call (``hy3d_ensemble``, ``hy3d_stream``)."""
    ready = [name for name, state in repository_index(http_url).items() if state == READY]
    steps: set[str] = set()
    for name in ready:
        scheduling = model_config(http_url, name).get("ensemble_scheduling") or {}
        steps.update(step["model_name"] for step in scheduling.get("step", []))
    return [name for name in ready if name not in steps]
