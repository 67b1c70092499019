"""The Python API: an image in, a GLB out.

    >>> from hy3d_client import generate
    >>> glb = generate("chair.png", seed=7, texture=False)            # doctest: +SKIP

Parameters are the contract's JSON keys (``remove_background``, ``texture``, ``seed``,
``octree_resolution``, ``num_inference_steps``, ``guidance_scale``, ``face_count``); anything else
or a value out of range raises ``ContractError`` before the server is contacted.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from .contract import validate_parameters
from .images import load_image
from .request import GenerationResult, InferenceRequest
from .retry import RetryPolicy
from .settings import TritonSettings
from .transport import TritonTransport

logger = logging.getLogger(__name__)


class Hy3DClient:
    """A client bound to one Triton server.

    ``url`` (``HOST:PORT``), ``protocol`` (``"grpc"`` or ``"http"``), ``timeout_s`` (per attempt)
    and ``model_name`` default to ``HY3D_TRITON_URL``, ``HY3D_TRITON_PROTOCOL``,
    ``HY3D_TRITON_TIMEOUT_S``, ``HY3D_TRITON_MODEL`` and then to ``localhost:8001``, gRPC, 600 s,
    ``hy3d_ensemble``. ``retry`` defaults to the ``HY3D_RETRY_*`` settings.
    Raises ``ConfigurationError`` naming an invalid setting.
    """

    def __init__(
        self,
        url: str | None = None,
        protocol: str | None = None,
        *,
        timeout_s: float | None = None,
        model_name: str | None = None,
        retry: RetryPolicy | None = None,
        environ: Mapping[str, str] | None = None,
    ):
        self.settings = TritonSettings.resolve(url, protocol, timeout_s, model_name, environ)
        self.retry = retry or RetryPolicy.from_env(environ)
        self._transport = TritonTransport(self.settings, self.retry)

    def generate(self, image: Any, **parameters: Any) -> bytes:
        """The GLB (binary glTF 2.0) for ``image`` (path, bytes, base64, PIL image or UINT8 array).

        Raises ``ContractError`` for a bad image or parameter (nothing is sent) and ``ServerError``
        when Triton fails or cannot be reached.
        """
        return self.generate_result(image, **parameters).glb

    def generate_result(self, image: Any, *, request_id: str | None = None, **parameters: Any) -> GenerationResult:
        """Like :meth:`generate`, with what the server reports: textured or not, seed used, engines."""
        validate_parameters(parameters)  # cheap checks first: a bad parameter costs no image decoding
        request = InferenceRequest.build(load_image(image), parameters)
        return self.send(request, request_id=request_id)

    def send(self, request: InferenceRequest, *, request_id: str | None = None) -> GenerationResult:
        """Send an already validated request (``request_id`` defaults to a new UUID)."""
        request_id = request_id or str(uuid.uuid4())
        return self._transport.infer(request, request_id=request_id)


def generate(
    image: Any,
    *,
    url: str | None = None,
    protocol: str | None = None,
    timeout_s: float | None = None,
    **parameters: Any,
) -> bytes:
    """One-call form of :meth:`Hy3DClient.generate`; settings as for :class:`Hy3DClient`."""
    return Hy3DClient(url, protocol, timeout_s=timeout_s).generate(image, **parameters)
