"""Reading and checking the input tensors of a stage, and building its output tensors.

A stage reads its inputs through an :data:`InputGetter` (tensor name -> numpy array, or None when the
optional input is absent), so these helpers run and are tested without Triton. Every check raises
:class:`~hy3d_client.contract.ContractError` naming the tensor and what is allowed, because a stage may
be called directly, not only through the ensemble.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from hy3d_client import contract

from .limits import MAX_MESH_FACES, MAX_MESH_VERTICES, MAX_TEXT_BYTES

InputGetter = Callable[[str], "np.ndarray | None"]

# Names of the tensors between the stages (see docs/ARCHITECTURE.md).
RGBA = "RGBA"
VERTICES = "VERTICES"
FACES = "FACES"
SHAPE_ENGINE = "SHAPE_ENGINE"


def read_image(get: InputGetter, name: str = contract.IMAGE_INPUT) -> np.ndarray:
    """The required image input ``name``: UINT8 ``[H, W, C]`` with C in {3, 4}, within the image limits."""
    return contract.validate_image(_required(get, name), field=name)


def read_rgba(get: InputGetter, name: str = RGBA) -> np.ndarray:
    """The required ``[H, W, 4]`` UINT8 image ``name`` (alpha = object mask, not empty), within the image limits."""
    image = read_image(get, name)
    if image.shape[2] != 4:
        raise contract.ContractError(name, f"expected 4 channels (RGBA), got {image.shape[2]}")
    if not image[:, :, 3].any():
        raise contract.ContractError(name, "the object mask is empty: its alpha channel is 0 everywhere")
    return image


def read_parameters(get: InputGetter, names: Iterable[str]) -> dict[str, bool | int | float]:
    """The contract parameters ``names`` (Triton tensor names), keyed by JSON key; absent -> default.

    Each present tensor must hold exactly one value of the parameter's type within its range.
    """
    values: dict[str, bool | int | float] = {}
    for name in names:
        try:
            parameter = contract.PARAMETERS_BY_NAME[name]
        except KeyError:
            raise ValueError(f"{name!r} is not a contract parameter") from None
        tensor = get(name)
        if tensor is None:
            values[parameter.key] = parameter.default
            continue
        _check_dtype(tensor, name, parameter.numpy_dtype, parameter.triton_dtype)
        values[parameter.key] = parameter.coerce(tensor, field=name)
    return values


def read_mesh(get: InputGetter) -> tuple[np.ndarray, np.ndarray]:
    """The ``VERTICES`` (FP32 ``[V, 3]``, finite) and ``FACES`` (INT32 ``[F, 3]``, valid indices) inputs."""
    vertices = _required(get, VERTICES)
    faces = _required(get, FACES)
    _check_dtype(vertices, VERTICES, np.float32, "FP32")
    _check_dtype(faces, FACES, np.int32, "INT32")
    for tensor, name, limit in ((vertices, VERTICES, MAX_MESH_VERTICES), (faces, FACES, MAX_MESH_FACES)):
        if tensor.ndim != 2 or tensor.shape[1] != 3:
            raise contract.ContractError(name, f"expected shape [N, 3], got {list(tensor.shape)}")
        if not 1 <= tensor.shape[0] <= limit:
            raise contract.ContractError(name, f"expected between 1 and {limit} rows, got {tensor.shape[0]}")
    if not np.isfinite(vertices).all():
        raise contract.ContractError(VERTICES, "every coordinate must be finite")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise contract.ContractError(FACES, f"every index must lie in [0, {len(vertices) - 1}]")
    return np.ascontiguousarray(vertices), np.ascontiguousarray(faces)


def read_text(get: InputGetter, name: str) -> str:
    """The required BYTES ``[1]`` input ``name`` as UTF-8 text."""
    tensor = _required(get, name)
    if tensor.size != 1:
        raise contract.ContractError(name, f"expected a single value, got shape {list(tensor.shape)}")
    value = tensor.reshape(-1)[0]
    if isinstance(value, str):
        value = value.encode()
    if not isinstance(value, bytes) or len(value) > MAX_TEXT_BYTES:
        raise contract.ContractError(name, f"expected a UTF-8 string of at most {MAX_TEXT_BYTES} bytes")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise contract.ContractError(name, "expected a UTF-8 string") from None


def bytes_tensor(value: bytes | str) -> np.ndarray:
    """A BYTES ``[1]`` tensor holding ``value`` (text is UTF-8 encoded)."""
    return np.array([value.encode() if isinstance(value, str) else value], dtype=np.object_)


def scalar_tensor(value: bool | int | float, triton_dtype: str) -> np.ndarray:
    """A ``[1]`` tensor of ``triton_dtype`` ("BOOL", "INT32", "INT64", "FP32") holding ``value``."""
    return np.array([value], dtype=contract.NUMPY_DTYPES[triton_dtype])


def _required(get: InputGetter, name: str) -> np.ndarray:
    tensor = get(name)
    if tensor is None:
        raise contract.ContractError(name, "required input is missing")
    return tensor


def _check_dtype(tensor: np.ndarray, name: str, numpy_dtype: object, triton_dtype: str) -> None:
    if not isinstance(tensor, np.ndarray) or tensor.dtype != numpy_dtype:
        got = tensor.dtype if isinstance(tensor, np.ndarray) else type(tensor).__name__
        raise contract.ContractError(name, f"expected dtype {triton_dtype}, got {got}")
