"""The request contract of ``hy3d_ensemble``: the one source of truth.

Tensor names, dtypes, defaults and allowed ranges of every input and output, and the image limits;
also the inputs and mesh-file limits of ``hy3d_texture``, which textures a mesh the caller sends.
The Triton models (``model_repository/*/1/model.py``), the ``config.pbtxt`` files (checked by a test),
the client SDK and the worker-compatible JSON handler all read this module. It depends on numpy only.

Each parameter has two names: the Triton tensor name (``SEED``) and the key used by the JSON job of
the serverless worker we replace and by Python keyword arguments (``seed``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

# --------------------------------------------------------------------------------------------------
# Image limits
# --------------------------------------------------------------------------------------------------

#: Smallest accepted image side, in pixels.
MIN_IMAGE_SIDE = 8
#: Largest accepted image side, in pixels.
MAX_IMAGE_SIDE = 4096
#: Largest accepted image area, in pixels (also the decompression-bomb limit of the client decoder).
MAX_IMAGE_PIXELS = 4096 * 4096
#: Largest accepted encoded image (PNG/JPEG/WebP bytes, before base64), in bytes.
MAX_IMAGE_BYTES = 32 * 1024 * 1024
#: Accepted channel counts of the ``IMAGE`` tensor; with 4 channels alpha is the object mask.
IMAGE_CHANNELS = (3, 4)

#: Name of the image input tensor and of the image key of a JSON job.
IMAGE_INPUT = "IMAGE"
IMAGE_KEY = "image"
IMAGE_DTYPE = "UINT8"

# Output tensors of the ensemble.
GLB_OUTPUT = "GLB"  # BYTES [1]: one binary glTF 2.0 asset
TEXTURED_OUTPUT = "TEXTURED"  # BOOL [1]: whether the GLB carries PBR textures
SEED_OUTPUT = "SEED_USED"  # INT64 [1]: the seed the request ran with
ENGINE_OUTPUT = "ENGINE"  # BYTES [1]: which engines produced the asset, e.g. b"shape=...;paint=..."

#: Triton name of the ensemble.
ENSEMBLE_MODEL = "hy3d_ensemble"

# --------------------------------------------------------------------------------------------------
# Texturing an existing mesh (model ``hy3d_texture``)
# --------------------------------------------------------------------------------------------------

#: Triton name of the model that textures a mesh the caller sends.
TEXTURE_MODEL = "hy3d_texture"
#: Name of the mesh input tensor (BYTES ``[1]``: the bytes of one GLB, OBJ or PLY file) and of the job key.
MESH_INPUT = "MESH"
MESH_KEY = "mesh"
MESH_DTYPE = "BYTES"
#: Accepted mesh file formats, told apart by their content: GLB starts with ``glTF``, PLY with ``ply``,
#: anything else that is text is read as OBJ.
MESH_FILE_FORMATS = ("glb", "obj", "ply")
#: Largest accepted mesh file, in bytes (checked before it is parsed).
MAX_MESH_FILE_BYTES = 64 * 1024 * 1024
#: Most triangles a mesh file may hold (polygons count once triangulated); more than ``FACE_COUNT``
#: are reduced by quadric decimation, so this bounds the reduction work.
MAX_MESH_FILE_FACES = 1_000_000
#: Most vertices a mesh file may hold (every triangle with its own three corners).
MAX_MESH_FILE_VERTICES = 3 * MAX_MESH_FILE_FACES
#: Bytes at the start of a file that must hold no NUL byte for it to be read as OBJ text.
MESH_TEXT_PROBE_BYTES = 64 * 1024

# Streaming (docs/streaming.md): the decoupled model ``hy3d_stream`` takes the ensemble's inputs and sends
# progress responses (STAGE + PROGRESS), then one final response with the ensemble's outputs and PROGRESS 1.
#: Triton name of the streaming model (gRPC streaming only).
STREAM_MODEL = "hy3d_stream"
STAGE_OUTPUT = "STAGE"  # BYTES [1]: the phase a progress response reports, one of PHASES
PROGRESS_OUTPUT = "PROGRESS"  # FP32 [1]: overall progress in [0, 1], never decreasing; 1 on the final response
#: Stable phase names, in the order they run (the texture phases only when TEXTURE is true).
PHASES = ("preprocess", "shape:denoise", "shape:decode", "shape:postprocess", "paint:uv", "paint:render",
          "paint:diffusion", "paint:upscale", "paint:bake", "export")

# numpy dtype for each Triton dtype used here.
NUMPY_DTYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP32": np.float32,
    "BYTES": np.object_,
}


class ContractError(ValueError):
    """A request that breaks the contract. ``field`` names the offending input (tensor name or key)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class Parameter:
    """One optional scalar parameter of a request: a boolean, a number in a range or one of a few words."""

    name: str  # Triton tensor name
    key: str  # JSON job key and Python keyword
    triton_dtype: str  # "BOOL", "INT32", "INT64", "FP32" or "BYTES" (with choices)
    default: bool | int | float | str
    minimum: int | float | None = None
    maximum: int | float | None = None
    description: str = ""
    choices: tuple[str, ...] = ()  # the allowed words of a BYTES parameter (UTF-8, exact spelling)

    @property
    def numpy_dtype(self) -> Any:
        return NUMPY_DTYPES[self.triton_dtype]

    @property
    def allowed(self) -> str:
        """Human-readable description of the allowed values, used in error messages and docs."""
        if self.triton_dtype == "BOOL":
            return "a boolean (true/false)"
        if self.choices:
            return f"one of {', '.join(self.choices)}"
        kind = "an integer" if self.triton_dtype.startswith("INT") else "a finite number"
        return f"{kind} in [{self.minimum}, {self.maximum}]"

    def coerce(self, value: Any, field: str | None = None) -> bool | int | float | str:
        """Check ``value`` against type and range (or choices); return it as a plain Python value.

        Raises ``ContractError`` naming ``field`` (default: the JSON key) and what is allowed.
        Strings are never converted ("5" is not a number); bools are not integers. A choice is a
        ``str`` or UTF-8 ``bytes`` (as a BYTES tensor holds it), spelled exactly as in ``choices``.
        """
        field = field or self.key
        if isinstance(value, np.ndarray):
            if value.size != 1:
                raise ContractError(field, f"expected a single value, got an array of shape {list(value.shape)}")
            value = value.reshape(-1)[0]
        if isinstance(value, np.generic):
            value = value.item()
        if self.triton_dtype == "BOOL":
            if not isinstance(value, bool):
                raise ContractError(field, f"expected {self.allowed}, got {_describe(value)}")
            return value
        if self.choices:
            return self._coerce_choice(value, field)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ContractError(field, f"expected {self.allowed}, got {_describe(value)}")
        if self.triton_dtype.startswith("INT"):
            if isinstance(value, float):
                if not value.is_integer():
                    raise ContractError(field, f"expected {self.allowed}, got {value!r}")
                value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise ContractError(field, f"expected {self.allowed}, got {value!r}")
        if (self.minimum is not None and value < self.minimum) or (
            self.maximum is not None and value > self.maximum
        ):
            raise ContractError(field, f"{value!r} is out of range; expected {self.allowed}")
        return value

    def _coerce_choice(self, value: Any, field: str) -> str:
        if isinstance(value, (bytes, bytearray)):
            try:
                value = bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                raise ContractError(field, f"expected {self.allowed}, got bytes that are not UTF-8") from None
        if not isinstance(value, str):
            raise ContractError(field, f"expected {self.allowed}, got {_describe(value)}")
        if value not in self.choices:
            raise ContractError(field, f"{_describe(value)} is not allowed; expected {self.allowed}")
        return value


#: The optional parameters, with the defaults of the serverless worker we replace.
PARAMETERS: tuple[Parameter, ...] = (
    Parameter("REMOVE_BACKGROUND", "remove_background", "BOOL", True,
              description="Remove the background of an image without alpha (rembg or the classical fallback)."),
    Parameter("TEXTURE", "texture", "BOOL", True,
              description="Paint PBR textures; false returns the untextured shape."),
    Parameter("SEED", "seed", "INT64", 1234, 0, 2**63 - 1,
              description="Seed of the shape noise and of the texture sampler."),
    Parameter("OCTREE_RESOLUTION", "octree_resolution", "INT32", 256, 16, 512,
              description="Marching-cubes grid resolution: R + 1 samples per axis."),
    Parameter("NUM_INFERENCE_STEPS", "num_inference_steps", "INT32", 5, 1, 100,
              description="Flow-matching sampler steps of the shape model."),
    Parameter("GUIDANCE_SCALE", "guidance_scale", "FP32", 5.0, 0.0, 30.0,
              description="Classifier-free guidance scale of the shape model."),
    Parameter("FACE_COUNT", "face_count", "INT32", 40000, 1000, 200000,
              description="Maximum number of faces of the output mesh (quadric decimation)."),
    Parameter("TEXTURE_FORMAT", "texture_format", "BYTES", "jpeg",
              description="Image format of the GLB's textures: jpeg (compact), png (lossless) or webp "
                          "(smallest; needs a viewer with EXT_texture_webp).",
              choices=("jpeg", "png", "webp")),
)

PARAMETERS_BY_NAME: dict[str, Parameter] = {p.name: p for p in PARAMETERS}
PARAMETERS_BY_KEY: dict[str, Parameter] = {p.key: p for p in PARAMETERS}
DEFAULTS: dict[str, bool | int | float | str] = {p.key: p.default for p in PARAMETERS}
#: The parameters ``hy3d_texture`` takes (Triton tensor names): no shape parameters, always textured.
TEXTURE_MODEL_PARAMETERS = ("REMOVE_BACKGROUND", "SEED", "FACE_COUNT", "TEXTURE_FORMAT")


def _describe(value: Any) -> str:
    if isinstance(value, str):
        shown = value if len(value) <= 20 else value[:20] + "..."
        return f"the string {shown!r}"
    return f"{type(value).__name__} {value!r}" if not isinstance(value, (list, dict)) else type(value).__name__


def validate_parameters(
    values: Mapping[str, Any], *, by: str = "key", names: Iterable[str] | None = None
) -> dict[str, bool | int | float | str]:
    """Fill defaults and check every parameter; return ``{key: value}`` for all parameters.

    ``values`` is keyed by JSON key (``by="key"``) or by Triton tensor name (``by="name"``).
    ``names`` (Triton tensor names, e.g. :data:`TEXTURE_MODEL_PARAMETERS`) restricts the request to
    those parameters; default: all of them. Unknown entries, wrong types and out-of-range values
    raise ``ContractError`` naming the entry. A value of ``None`` means "use the default".
    """
    parameters = PARAMETERS if names is None else tuple(PARAMETERS_BY_NAME[name] for name in names)
    table = {(p.key if by == "key" else p.name): p for p in parameters}
    unknown = sorted(set(values) - set(table))
    if unknown:
        raise ContractError(unknown[0], f"unknown parameter; allowed: {', '.join(sorted(table))}")
    result: dict[str, bool | int | float | str] = {}
    for p in parameters:
        label = p.key if by == "key" else p.name
        raw = values.get(label)
        result[p.key] = p.default if raw is None else p.coerce(raw, field=label)
    return result


def validate_image(image: Any, field: str = IMAGE_INPUT) -> np.ndarray:
    """Check an image tensor: UINT8 ``[H, W, C]``, C in {3, 4}, sides and area within the limits.

    Returns the array (C-contiguous). Raises ``ContractError`` naming ``field`` and what is allowed.
    """
    if not isinstance(image, np.ndarray):
        raise ContractError(field, f"expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ContractError(field, f"expected dtype UINT8, got {image.dtype}")
    if image.ndim != 3:
        raise ContractError(field, f"expected rank 3 [H, W, C], got shape {list(image.shape)}")
    height, width, channels = image.shape
    if channels not in IMAGE_CHANNELS:
        raise ContractError(field, f"expected C in {{3, 4}} channels (RGB or RGBA), got {channels}")
    check_image_size(width, height, field)
    return np.ascontiguousarray(image)


def check_image_size(width: int, height: int, field: str = IMAGE_INPUT) -> None:
    """Raise ``ContractError`` unless ``width`` x ``height`` is within the image limits."""
    if min(width, height) < MIN_IMAGE_SIDE:
        raise ContractError(field, f"image is {width}x{height}; each side must be at least {MIN_IMAGE_SIDE} px")
    if max(width, height) > MAX_IMAGE_SIDE:
        raise ContractError(field, f"image is {width}x{height}; each side must be at most {MAX_IMAGE_SIDE} px")
    if width * height > MAX_IMAGE_PIXELS:
        raise ContractError(field, f"image has {width * height} pixels; at most {MAX_IMAGE_PIXELS} allowed")


def parameter_tensor(p: Parameter, value: Any) -> np.ndarray:
    """The ``[1]`` numpy array that carries parameter ``p`` in a Triton request (UTF-8 bytes for BYTES)."""
    checked = p.coerce(value)
    if p.triton_dtype == "BYTES":
        return np.array([str(checked).encode("utf-8")], dtype=np.object_)
    return np.array([checked], dtype=p.numpy_dtype)


def mesh_file_format(data: Any, field: str = MESH_INPUT) -> str:
    """Check the bytes of a mesh file (type, size, format) and return its format: ``glb``, ``obj`` or ``ply``.

    The format is told by the content: a GLB starts with ``glTF``, a PLY with ``ply`` and a line
    break; anything else must be text (no NUL byte in its first ``MESH_TEXT_PROBE_BYTES``) and is
    read as OBJ. Whether the file parses is checked by the server. Raises ``ContractError`` naming
    ``field`` when ``data`` is not bytes, is empty, is larger than ``MAX_MESH_FILE_BYTES`` or is a
    binary file of another kind.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ContractError(field, f"expected the bytes of a GLB, OBJ or PLY file, got {type(data).__name__}")
    size = len(data)
    if size == 0:
        raise ContractError(field, "empty; expected the bytes of a GLB, OBJ or PLY file")
    if size > MAX_MESH_FILE_BYTES:
        raise ContractError(field, f"mesh file is {size} bytes; at most {MAX_MESH_FILE_BYTES} bytes allowed")
    head = bytes(data[:MESH_TEXT_PROBE_BYTES])
    if head.startswith(b"glTF"):
        return "glb"
    if head.startswith((b"ply\n", b"ply\r\n")):
        return "ply"
    if head.lstrip()[:1] == b"{":
        raise ContractError(field, "this looks like glTF JSON (.gltf); send the binary .glb, which embeds its buffers")
    if b"\x00" in head:
        raise ContractError(field, "not a GLB, OBJ or PLY file (a GLB starts with 'glTF', a PLY with 'ply'; "
                                   "an OBJ is text)")
    return "obj"
