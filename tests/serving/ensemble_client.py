"""One ensemble request through the client SDK, as the serving tests send it."""

from __future__ import annotations

from typing import Any

from hy3d_client.request import GenerationResult
from hy3d_client.sdk import Hy3DClient

#: Seconds one request may take.
REQUEST_TIMEOUT_S = 900


def generate(url: str, protocol: str, image: Any, parameters: dict[str, Any]) -> GenerationResult:
    """The ensemble's result for ``image`` with ``parameters`` (JSON keys) from the server at ``url``."""
    return Hy3DClient(url, protocol, timeout_s=REQUEST_TIMEOUT_S).generate_result(image, **parameters)
