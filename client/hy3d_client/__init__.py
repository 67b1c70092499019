"""hy3d_client: thin client for the hy3d-triton image-to-3D service.

``import hy3d_client.contract`` (what the Triton models do) needs numpy only: everything else is
imported on first use, so tritonclient, boto3 and Pillow are needed only by the client side.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .contract import ContractError

if TYPE_CHECKING:
    from .errors import ConfigurationError, Hy3DError, ServerError, UploadError
    from .request import GenerationResult
    from .retry import RetryPolicy
    from .sdk import Hy3DClient, generate, texture
    from .worker import handle, worker_fn

_LAZY_EXPORTS = {
    "generate": ".sdk",
    "texture": ".sdk",
    "Hy3DClient": ".sdk",
    "GenerationResult": ".request",
    "RetryPolicy": ".retry",
    "handle": ".worker",
    "worker_fn": ".worker",
    "Hy3DError": ".errors",
    "ConfigurationError": ".errors",
    "ServerError": ".errors",
    "UploadError": ".errors",
}

__all__ = [
    "ConfigurationError",
    "ContractError",
    "GenerationResult",
    "Hy3DClient",
    "Hy3DError",
    "RetryPolicy",
    "ServerError",
    "UploadError",
    "generate",
    "handle",
    "texture",
    "worker_fn",
]


def __getattr__(name: str) -> Any:
    module = _LAZY_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hy3d_client' has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
