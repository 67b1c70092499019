"""Triton model ``paint_pbr``: mesh + RGBA image -> GLB (textured on request), TEXTURED, SEED_USED, ENGINE."""

from __future__ import annotations

import numpy as np
from hy3d_client import contract

from hy3d_serving import tensors
from hy3d_serving.engines import load_paint_engine
from hy3d_serving.progress import StepCallback
from hy3d_serving.stage_config import StageConfig
from hy3d_serving.stages import PAINT_PARAMETERS, MeshArrays, make_asset
from hy3d_serving.triton_model import StageModel

#: Shape engine reported when the stage is called directly without SHAPE_ENGINE.
UNKNOWN_SHAPE_ENGINE = "external"


class TritonPythonModel(StageModel):
    stage = "paint_pbr"

    def load(self, config: StageConfig) -> None:
        self.engine = load_paint_engine(config)
        self.engine_name = self.engine.name

    def infer(self, get: tensors.InputGetter, callback: StepCallback | None = None) -> dict[str, np.ndarray]:
        vertices, faces = tensors.read_mesh(get)
        rgba = tensors.read_rgba(get)
        params = tensors.read_parameters(get, PAINT_PARAMETERS)
        shape_engine = (tensors.read_text(get, tensors.SHAPE_ENGINE)
                        if get(tensors.SHAPE_ENGINE) is not None else UNKNOWN_SHAPE_ENGINE)
        asset = make_asset(self.engine, shape_engine, MeshArrays(vertices, faces), rgba, params, callback)
        return {
            contract.GLB_OUTPUT: tensors.bytes_tensor(asset.glb),
            contract.TEXTURED_OUTPUT: tensors.scalar_tensor(asset.textured, "BOOL"),
            contract.SEED_OUTPUT: tensors.scalar_tensor(asset.seed_used, "INT64"),
            contract.ENGINE_OUTPUT: tensors.bytes_tensor(asset.engine),
        }
