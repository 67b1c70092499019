"""Triton model ``shape_dit``: RGBA image -> post-processed mesh (VERTICES, FACES) and the engine name."""

from __future__ import annotations

import numpy as np

from hy3d_serving import tensors
from hy3d_serving.engines import load_shape_engine
from hy3d_serving.progress import StepCallback
from hy3d_serving.stage_config import StageConfig
from hy3d_serving.stages import SHAPE_PARAMETERS, check_object_mask, make_shape
from hy3d_serving.triton_model import StageModel


class TritonPythonModel(StageModel):
    stage = "shape_dit"

    def load(self, config: StageConfig) -> None:
        self.engine = load_shape_engine(config)
        self.engine_name = self.engine.name

    def infer(self, get: tensors.InputGetter, callback: StepCallback | None = None) -> dict[str, np.ndarray]:
        rgba = tensors.read_rgba(get)
        check_object_mask(rgba, tensors.RGBA)
        params = tensors.read_parameters(get, SHAPE_PARAMETERS)
        mesh = make_shape(self.engine, rgba, params, callback)
        return {
            tensors.VERTICES: mesh.vertices,
            tensors.FACES: mesh.faces,
            tensors.SHAPE_ENGINE: tensors.bytes_tensor(self.engine.name),
        }
