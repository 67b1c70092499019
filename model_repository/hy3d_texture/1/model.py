"""Triton model ``hy3d_texture``: MESH file + IMAGE -> GLB, TEXTURED, SEED_USED, ENGINE (as ``hy3d_ensemble``).

Checks the whole request and prepares the mesh here (``hy3d_serving.mesh_input``), then calls
``preprocess`` (image -> RGBA) and ``paint_pbr`` (texture + export) through BLS, so the paint weights are
loaded once for both public models. An error of a called stage comes back naming the stage and the input.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from hy3d_client import contract

from hy3d_serving import bls, tensors
from hy3d_serving.errors import EngineError
from hy3d_serving.mesh_input import prepare_mesh, read_mesh_file
from hy3d_serving.progress import StepCallback
from hy3d_serving.stage_config import StageConfig
from hy3d_serving.triton_model import StageModel

#: The stages called, in order.
PREPROCESS_MODEL = "preprocess"
PAINT_MODEL = "paint_pbr"
#: Shape engine named in ENGINE: the caller's mesh.
INPUT_MESH_ENGINE = "input-mesh"
OUTPUTS = (contract.GLB_OUTPUT, contract.TEXTURED_OUTPUT, contract.SEED_OUTPUT, contract.ENGINE_OUTPUT)
#: How a stage words an invalid input (``hy3d_serving.errors.error_reply``): stage, input, problem.
_INVALID_INPUT = re.compile(r"^(?P<stage>[\w-]+): invalid input (?P<field>[A-Z_]+): (?P<problem>.*)$", re.DOTALL)


def call_stage(model: str, inputs: dict[str, np.ndarray], outputs: tuple[str, ...], request_id: str) -> dict[str, np.ndarray]:
    """Run ``model`` on ``inputs`` through BLS; its ``outputs`` by name.

    An invalid-input error of the stage becomes a ``ContractError`` naming the same input; any other
    error, or an answer lacking an output, an ``EngineError`` with the stage's message.
    """
    try:
        return bls.call_stage(model, inputs, outputs, request_id)
    except bls.StageError as error:
        match = _INVALID_INPUT.match(str(error))
        if match:
            raise contract.ContractError(match["field"], f"{match['problem']} (in {match['stage']})") from None
        raise EngineError(str(error)) from None


class TritonPythonModel(StageModel):
    stage = contract.TEXTURE_MODEL

    def load(self, config: StageConfig) -> None:
        self._request_id = ""

    def _respond(self, pb_utils: Any, request: Any) -> Any:
        self._request_id = request.request_id()  # handed on to the stages called, for one trail in the log
        return super()._respond(pb_utils, request)

    def infer(self, get: tensors.InputGetter, callback: StepCallback | None = None) -> dict[str, np.ndarray]:
        # Everything the caller sent is checked before any work: parameters, image, then the mesh.
        params = tensors.read_parameters(get, contract.TEXTURE_MODEL_PARAMETERS)
        image = tensors.read_image(get)
        mesh = prepare_mesh(read_mesh_file(get), int(params["face_count"]))
        if callback is not None:
            callback("preprocess", 0, 1)  # a step boundary: stops here if the client went away
        parameter_tensors = {name: contract.parameter_tensor(contract.PARAMETERS_BY_NAME[name],
                                                             params[contract.PARAMETERS_BY_NAME[name].key])
                             for name in contract.TEXTURE_MODEL_PARAMETERS}
        rgba = call_stage(PREPROCESS_MODEL, {contract.IMAGE_INPUT: image, **parameter_tensors},
                          (tensors.RGBA,), self._request_id)[tensors.RGBA]
        if callback is not None:
            callback("preprocess", 1, 1)
        return call_stage(PAINT_MODEL, {
            tensors.VERTICES: mesh.vertices,
            tensors.FACES: mesh.faces,
            tensors.RGBA: rgba,
            "TEXTURE": tensors.scalar_tensor(True, "BOOL"),
            "SEED": parameter_tensors["SEED"],
            "TEXTURE_FORMAT": parameter_tensors["TEXTURE_FORMAT"],
            tensors.SHAPE_ENGINE: tensors.bytes_tensor(INPUT_MESH_ENGINE),
        }, OUTPUTS, self._request_id)
