"""Triton model ``preprocess``: validate the whole request, then image -> RGBA with the object mask."""

from __future__ import annotations

import logging

import numpy as np
from hy3d_client import contract

from hy3d_serving import tensors
from hy3d_serving.engines import load_background_remover
from hy3d_serving.progress import StepCallback
from hy3d_serving.stage_config import StageConfig
from hy3d_serving.stages import preprocess_image
from hy3d_serving.triton_model import StageModel

logger = logging.getLogger("hy3d_serving.preprocess")


class TritonPythonModel(StageModel):
    stage = "preprocess"

    def load(self, config: StageConfig) -> None:
        self.remover = load_background_remover(config)
        self.engine_name = f"background-removal-{self.remover.method}"

    def infer(self, get: tensors.InputGetter, callback: StepCallback | None = None) -> dict[str, np.ndarray]:
        image = tensors.read_image(get)
        # Every parameter of the request is checked here, so that a bad value fails before shape work.
        params = tensors.read_parameters(get, contract.PARAMETERS_BY_NAME)
        logger.info("image %s, parameters %s", list(image.shape), params)
        rgba = preprocess_image(image, bool(params["remove_background"]), self.remover, callback)
        return {tensors.RGBA: rgba}
