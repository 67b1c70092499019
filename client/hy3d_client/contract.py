"""The request contract of ``hy3d_ensemble``: the one source of truth.

Tensor names, dtypes, defaults and allowed ranges of every input and output, and the image limits.
The Triton models (``model_repository/*/1/model.py``), the ``config.pbtxt`` files (checked by a test),
the client SDK and the worker-compatible JSON handler all read this module. It depends on numpy only.

Each parameter has two names: the Triton tensor name (``SEED``) and the key used by the JSON job of
the serverless worker we replace and by Python keyword arguments (``seed``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
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
    """One optional scalar parameter of a request."""

    name: str  # Triton tensor name
    key: str  # JSON job key and Python keyword
    triton_dtype: str  # "BOOL", "INT32", "INT64" or "FP32"
    default: bool | int | float
    minimum: int | float | None = None
    maximum: int | float | None = None
    description: str = ""

    @property
    def numpy_dtype(self) -> Any:
        return NUMPY_DTYPES[self.triton_dtype]

    @property
    def allowed(self) -> str:
        """Human-readable description of the allowed values, used in error messages and docs."""
        if self.triton_dtype == "BOOL":
            return "a boolean (true/false)"
        kind = "an integer" if self.triton_dtype.startswith("INT") else "a finite number"
        return f"{kind} in [{self.minimum}, {self.maximum}]"

    def coerce(self, value: Any, field: str | None = None) -> bool | int | float:
        """Check ``value`` against type and range; return it as a plain Python value.

        Raises ``ContractError`` naming ``field`` (default: the JSON key) and what is allowed.
        Strings are never converted ("5" is not a number); bools are not integers.
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
)

PARAMETERS_BY_NAME: dict[str, Parameter] = {p.name: p for p in PARAMETERS}
PARAMETERS_BY_KEY: dict[str, Parameter] = {p.key: p for p in PARAMETERS}
DEFAULTS: dict[str, bool | int | float] = {p.key: p.default for p in PARAMETERS}


def _describe(value: Any) -> str:
    if isinstance(value, str):
        shown = value if len(value) <= 20 else value[:20] + "..."
        return f"the string {shown!r}"
    return f"{type(value).__name__} {value!r}" if not isinstance(value, (list, dict)) else type(value).__name__


def validate_parameters(values: Mapping[str, Any], *, by: str = "key") -> dict[str, bool | int | float]:
    """Fill defaults and check every parameter; return ``{key: value}`` for all parameters.

    ``values`` is keyed by JSON key (``by="key"``) or by Triton tensor name (``by="name"``).
    Unknown entries, wrong types and out-of-range values raise ``ContractError`` naming the entry.
    A value of ``None`` means "use the default".
    """
    table = PARAMETERS_BY_KEY if by == "key" else PARAMETERS_BY_NAME
    unknown = sorted(set(values) - set(table))
    if unknown:
        raise ContractError(unknown[0], f"unknown parameter; allowed: {', '.join(sorted(table))}")
    result: dict[str, bool | int | float] = {}
    for p in PARAMETERS:
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
    """The ``[1]`` numpy array that carries parameter ``p`` in a Triton request."""
    return np.array([p.coerce(value)], dtype=p.numpy_dtype)
