"""The tensors of one ``hy3d_ensemble`` request and of its answer, as the contract defines them.

The client sends every parameter of the contract, defaults filled in from the contract: a request
says exactly what it asks for, and its result does not depend on which defaults a server runs with.
All tensors travel as binary data (raw bytes, not JSON lists) over HTTP and gRPC alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from .contract import (
    ENGINE_OUTPUT,
    GLB_OUTPUT,
    IMAGE_DTYPE,
    IMAGE_INPUT,
    MESH_DTYPE,
    MESH_INPUT,
    PARAMETERS,
    PARAMETERS_BY_NAME,
    SEED_OUTPUT,
    TEXTURE_MODEL_PARAMETERS,
    TEXTURED_OUTPUT,
    mesh_file_format,
    parameter_tensor,
    validate_image,
    validate_parameters,
)

#: The outputs asked of the ensemble, in this order.
OUTPUT_NAMES = (GLB_OUTPUT, TEXTURED_OUTPUT, SEED_OUTPUT, ENGINE_OUTPUT)


@dataclass(frozen=True)
class InferenceRequest:
    """A validated request: the image tensor and every parameter (``{key: value}``)."""

    image: np.ndarray
    parameters: Mapping[str, bool | int | float]

    @classmethod
    def build(cls, image: np.ndarray, parameters: Mapping[str, Any]) -> InferenceRequest:
        """Validate ``image`` (UINT8 ``[H, W, 3|4]``) and ``parameters`` (JSON keys; missing or None
        means the contract's default). Raises ``ContractError`` naming the offending field."""
        values = validate_parameters(parameters, by="key")
        return cls(image=validate_image(image), parameters=values)

    def tensors(self) -> list[tuple[str, str, np.ndarray]]:
        """``(tensor name, Triton dtype, array)`` for the image and then every parameter."""
        tensors = [(IMAGE_INPUT, IMAGE_DTYPE, self.image)]
        for parameter in PARAMETERS:
            tensors.append((parameter.name, parameter.triton_dtype, parameter_tensor(parameter, self.parameters[parameter.key])))
        return tensors

    def triton_inputs(self, protocol_module: ModuleType) -> list[Any]:
        """``InferInput`` objects of ``tritonclient.http`` or ``tritonclient.grpc``, binary data set."""
        return _triton_inputs(self.tensors(), protocol_module)


@dataclass(frozen=True)
class TextureRequest:
    """A validated ``hy3d_texture`` request: the mesh file's bytes, the image and the parameters that model
    takes (``{key: value}``, see ``TEXTURE_MODEL_PARAMETERS``). Sent like :class:`InferenceRequest`."""

    mesh: bytes
    image: np.ndarray
    parameters: Mapping[str, bool | int | float | str]

    @classmethod
    def build(cls, mesh: bytes, image: np.ndarray, parameters: Mapping[str, Any]) -> TextureRequest:
        """Validate ``mesh`` (the bytes of a GLB, OBJ or PLY file, within ``MAX_MESH_FILE_BYTES``), ``image``
        and ``parameters`` (JSON keys of ``TEXTURE_MODEL_PARAMETERS``; missing or None means the default).
        Raises ``ContractError`` naming the offending field."""
        values = validate_parameters(parameters, by="key", names=TEXTURE_MODEL_PARAMETERS)
        mesh_file_format(mesh, MESH_INPUT)
        return cls(mesh=bytes(mesh), image=validate_image(image), parameters=values)

    def tensors(self) -> list[tuple[str, str, np.ndarray]]:
        """``(tensor name, Triton dtype, array)`` for the mesh, the image and then every parameter."""
        tensors = [(MESH_INPUT, MESH_DTYPE, np.array([self.mesh], dtype=np.object_)),
                   (IMAGE_INPUT, IMAGE_DTYPE, self.image)]
        for name in TEXTURE_MODEL_PARAMETERS:
            parameter = PARAMETERS_BY_NAME[name]
            tensors.append((name, parameter.triton_dtype, parameter_tensor(parameter, self.parameters[parameter.key])))
        return tensors

    def triton_inputs(self, protocol_module: ModuleType) -> list[Any]:
        """``InferInput`` objects of ``tritonclient.http`` or ``tritonclient.grpc``, binary data set."""
        return _triton_inputs(self.tensors(), protocol_module)


def _triton_inputs(tensors: list[tuple[str, str, np.ndarray]], protocol_module: ModuleType) -> list[Any]:
    inputs = []
    is_http = protocol_module.__name__.endswith(".http")
    for name, dtype, array in tensors:
        tensor = protocol_module.InferInput(name, list(array.shape), dtype)
        if is_http:
            tensor.set_data_from_numpy(array, binary_data=True)
        else:
            tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def requested_outputs(protocol_module: ModuleType) -> list[Any]:
    """``InferRequestedOutput`` objects for :data:`OUTPUT_NAMES` (binary data over HTTP)."""
    if protocol_module.__name__.endswith(".http"):
        return [protocol_module.InferRequestedOutput(name, binary_data=True) for name in OUTPUT_NAMES]
    return [protocol_module.InferRequestedOutput(name) for name in OUTPUT_NAMES]


@dataclass(frozen=True)
class GenerationResult:
    """What the ensemble returned: the GLB asset and how it was made."""

    glb: bytes
    textured: bool
    seed: int
    engine: str

    @classmethod
    def from_outputs(cls, outputs: Mapping[str, np.ndarray | None]) -> GenerationResult:
        """Read the four output tensors. Raises ``ValueError`` naming a missing or malformed one."""
        glb = _single(outputs, GLB_OUTPUT)
        engine = _single(outputs, ENGINE_OUTPUT)
        if not isinstance(glb, bytes) or not glb:
            raise ValueError(f"output {GLB_OUTPUT} is empty or not bytes")
        return cls(
            glb=glb,
            textured=bool(_single(outputs, TEXTURED_OUTPUT)),
            seed=int(_single(outputs, SEED_OUTPUT)),
            engine=engine.decode("utf-8", "replace") if isinstance(engine, bytes) else str(engine),
        )


def _single(outputs: Mapping[str, np.ndarray | None], name: str) -> Any:
    array = outputs.get(name)
    if array is None:
        raise ValueError(f"the server's answer lacks output {name}")
    if array.size != 1:
        raise ValueError(f"output {name} should hold one element, got shape {list(array.shape)}")
    value = array.reshape(-1)[0]
    return value.item() if isinstance(value, np.generic) else value
