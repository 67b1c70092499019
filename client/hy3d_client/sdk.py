"""The Python API: an image in, a GLB out.

    >>> from hy3d_client import generate
    >>> glb = generate("chair.png", seed=7, texture=False)            # doctest: +SKIP

Parameters are the contract's JSON keys (``remove_background``, ``texture``, ``seed``,
``octree_resolution``, ``num_inference_steps``, ``guidance_scale``, ``face_count``,
``texture_format``); anything else or a value out of range raises ``ContractError`` before the server
is contacted. ``texture(mesh, image, ...)`` textures a mesh the caller has (model ``hy3d_texture``;
parameters ``remove_background``, ``seed``, ``face_count``, ``texture_format``).
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from .contract import TEXTURE_MODEL, TEXTURE_MODEL_PARAMETERS, validate_parameters
from .images import load_image
from .meshes import load_mesh_file
from .request import GenerationResult, InferenceRequest, TextureRequest
from .retry import RetryPolicy
from .settings import TritonSettings
from .stream import CancelToken, ProgressCallback, stream_generate
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
        self._texture_transport: TritonTransport | None = None  # made on the first texture request

    def generate(self, image: Any, *, progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
                 **parameters: Any) -> bytes:
        """The GLB (binary glTF 2.0) for ``image`` (path, bytes, base64, PIL image or UINT8 array).

        With ``progress`` (called with a :class:`~hy3d_client.stream.Progress` per server report) or
        ``cancel`` (a ``threading.Event``-like token), the request streams from ``hy3d_stream`` over
        gRPC; setting the token or interrupting the call cancels it on the server
        (``GenerationCancelledError`` / ``KeyboardInterrupt``). Raises ``ContractError`` for a bad image or
        parameter (nothing is sent) and ``ServerError`` when Triton fails or cannot be reached.
        """
        return self.generate_result(image, progress=progress, cancel=cancel, **parameters).glb

    def generate_result(self, image: Any, *, request_id: str | None = None, progress: ProgressCallback | None = None,
                        cancel: CancelToken | None = None, **parameters: Any) -> GenerationResult:
        """Like :meth:`generate`, with what the server reports: textured or not, seed used, engines."""
        validate_parameters(parameters)  # cheap checks first: a bad parameter costs no image decoding
        request = InferenceRequest.build(load_image(image), parameters)
        return self.send(request, request_id=request_id, progress=progress, cancel=cancel)

    def send(self, request: InferenceRequest, *, request_id: str | None = None,
             progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> GenerationResult:
        """Send an already validated request (``request_id`` defaults to a new UUID); streamed when
        ``progress`` or ``cancel`` is given (see :meth:`generate`)."""
        request_id = request_id or str(uuid.uuid4())
        if progress is not None or cancel is not None:
            return stream_generate(self.settings, request, request_id=request_id, progress=progress, cancel=cancel)
        return self._transport.infer(request, request_id=request_id)

    def texture(self, mesh: Any, image: Any, **parameters: Any) -> bytes:
        """The GLB of ``mesh`` (a path or the bytes of a GLB, OBJ or PLY file; +Y up, front towards +Z)
        PBR-textured after ``image`` (as for :meth:`generate`), by the model ``hy3d_texture``.

        ``parameters``: ``remove_background``, ``seed``, ``face_count`` (the mesh is reduced only when
        it has more faces) and ``texture_format``. Raises ``ContractError`` for a bad mesh file, image
        or parameter (nothing is sent) and ``ServerError`` when Triton fails, e.g. refuses the mesh.
        """
        return self.texture_result(mesh, image, **parameters).glb

    def texture_result(self, mesh: Any, image: Any, *, request_id: str | None = None,
                       **parameters: Any) -> GenerationResult:
        """Like :meth:`texture`, with what the server reports: textured, seed used, engines."""
        validate_parameters(parameters, names=TEXTURE_MODEL_PARAMETERS)  # cheap checks first
        request = TextureRequest.build(load_mesh_file(mesh), load_image(image), parameters)
        return self.send_texture(request, request_id=request_id)

    def send_texture(self, request: TextureRequest, *, request_id: str | None = None) -> GenerationResult:
        """Send an already validated texturing request to ``hy3d_texture`` (``request_id``: a new UUID)."""
        if self._texture_transport is None:
            texture_settings = dataclasses.replace(self.settings, model_name=TEXTURE_MODEL)
            self._texture_transport = TritonTransport(texture_settings, self.retry)
        return self._texture_transport.infer(request, request_id=request_id or str(uuid.uuid4()))


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


def texture(
    mesh: Any,
    image: Any,
    *,
    url: str | None = None,
    protocol: str | None = None,
    timeout_s: float | None = None,
    **parameters: Any,
) -> bytes:
    """One-call form of :meth:`Hy3DClient.texture`; settings as for :class:`Hy3DClient`."""
    return Hy3DClient(url, protocol, timeout_s=timeout_s).texture(mesh, image, **parameters)
