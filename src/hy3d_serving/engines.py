"""Engine selection: Hunyuan3D-2.1 when a weights folder is set, the built-in CPU engines otherwise.

Each engine has a ``name`` (reported in the logs and in the ``ENGINE`` output) and is loaded once per
model instance. The engine libraries (``hy3dshape``, ``hy3dpaint``, torch) are imported only here and
only when an engine is built, so that importing ``hy3d_serving`` stays cheap.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from .errors import EngineError
from .progress import StepCallback
from .stage_config import StageConfig
from .weights import (
    PAINT_FILES,
    PAINT_SUBFOLDER,
    SHAPE_FILES,
    SHAPE_SUBFOLDER,
    WeightsError,
    check_required_weights,
    check_weights,
)

logger = logging.getLogger(__name__)

SHAPE_NEURAL = SHAPE_SUBFOLDER  # the neural engines are named after the official model folders
SHAPE_BUILTIN = "builtin-silhouette"
PAINT_NEURAL = PAINT_SUBFOLDER
PAINT_BUILTIN = "builtin-projection"
#: Paint engine name reported when a request asks for no texture.
PAINT_NONE = "none"

# Keyword of Hunyuan3DPaintConfig.from_weights_dir for each paint size setting.
_PAINT_CONFIG_KEYWORDS = {
    "paint_view_size": "resolution",
    "paint_render_size": "render_size",
    "paint_texture_size": "texture_size",
    "paint_max_num_view": "max_num_view",
}


class ShapeEngine(ABC):
    """Image (PIL RGBA, alpha = object mask) -> raw mesh, before post-processing."""

    name: str

    @abstractmethod
    def generate(self, image: Any, *, seed: int, octree_resolution: int, num_inference_steps: int,
                 guidance_scale: float, callback: StepCallback | None = None) -> Any:
        """Return one ``trimesh.Trimesh``; raise :class:`EngineError` when no surface was found.

        ``callback(phase, done, total)`` goes to the library, which calls it at every step boundary.
        """


class PaintEngine(ABC):
    """Mesh + image -> textured mesh (UVs and a PBR material)."""

    name: str

    @abstractmethod
    def paint(self, mesh: Any, image: Any, *, seed: int, callback: StepCallback | None = None) -> Any:
        """Return the textured ``trimesh.Trimesh`` for ``mesh`` painted after ``image`` (PIL RGBA).

        ``callback(phase, done, total)`` goes to the library, which calls it at every step boundary.
        """


class NeuralShapeEngine(ShapeEngine):
    """Hunyuan3D-2.1 DiT flow-matching pipeline loaded from ``<weights>/hunyuan3d-dit-v2-1``."""

    name = SHAPE_NEURAL

    def __init__(self, config: StageConfig):
        from hy3dshape import Hunyuan3DDiTFlowMatchingPipeline

        weights_dir = _require_weights(config)
        check_weights(weights_dir, SHAPE_FILES, "shape_dit")
        use_safetensors = not (weights_dir / SHAPE_SUBFOLDER / "model.fp16.ckpt").is_file()
        self._pipeline = Hunyuan3DDiTFlowMatchingPipeline.from_pretrained(
            str(weights_dir), subfolder=SHAPE_SUBFOLDER, device=config.device,
            dtype=config.torch_dtype(), use_safetensors=use_safetensors, compile=config.compile,
        )
        self._pipeline.set_volume_decoder(config.volume_decoder)  # HY3D_VOLUME_DECODER, default flashvdm

    def generate(self, image: Any, *, seed: int, octree_resolution: int, num_inference_steps: int,
                 guidance_scale: float, callback: StepCallback | None = None) -> Any:
        import torch

        meshes = self._pipeline(
            image=image, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
            octree_resolution=octree_resolution, generator=torch.Generator().manual_seed(seed),
            output_type="trimesh", callback=callback,
        )
        return _only_mesh(meshes, "the shape model found no surface for this image and seed; try another seed")


class BuiltinShapeEngine(ShapeEngine):
    """Silhouette lifting on the CPU, no weights; deterministic (the seed does not change the shape)."""

    name = SHAPE_BUILTIN

    def __init__(self, config: StageConfig):
        from hy3dshape import SilhouetteLiftingPipeline

        self._pipeline = SilhouetteLiftingPipeline()

    def generate(self, image: Any, *, seed: int, octree_resolution: int, num_inference_steps: int,
                 guidance_scale: float, callback: StepCallback | None = None) -> Any:
        meshes = self._pipeline(image=image, octree_resolution=octree_resolution, output_type="trimesh",
                                callback=callback)
        return _only_mesh(meshes, "the silhouette engine found no surface: is the object mask empty?")


class NeuralPaintEngine(PaintEngine):
    """Hunyuan3D-Paint 2.1 multiview PBR diffusion, DINOv2-giant and RealESRGAN from the weights folder."""

    name = PAINT_NEURAL

    def __init__(self, config: StageConfig):
        from hy3dpaint import Hunyuan3DPaintConfig, Hunyuan3DPaintPipeline

        weights_dir = _require_weights(config)
        check_weights(weights_dir, PAINT_FILES, "paint_pbr")
        sizes = {_PAINT_CONFIG_KEYWORDS[key]: value for key, value in config.paint_sizes.items()}
        paint_config = Hunyuan3DPaintConfig.from_weights_dir(
            weights_dir, device=config.device, dtype=config.torch_dtype(), **sizes
        )
        self._pipeline = Hunyuan3DPaintPipeline(paint_config)

    def paint(self, mesh: Any, image: Any, *, seed: int, callback: StepCallback | None = None) -> Any:
        return self._pipeline(mesh, image, seed=seed, output_type="trimesh", callback=callback)


class BuiltinPaintEngine(PaintEngine):
    """Projection of the input view onto the mesh on the CPU, no weights."""

    name = PAINT_BUILTIN

    def __init__(self, config: StageConfig):
        from hy3dpaint import ProjectionTexturePipeline

        self._pipeline = ProjectionTexturePipeline()

    def paint(self, mesh: Any, image: Any, *, seed: int, callback: StepCallback | None = None) -> Any:
        return self._pipeline(mesh, image=image, seed=seed, callback=callback)


def _only_mesh(meshes: list[Any] | None, failure: str) -> Any:
    """The one mesh a pipeline returned for one image; :class:`EngineError` with ``failure`` if none."""
    if not meshes or meshes[0] is None:
        raise EngineError(failure)
    return meshes[0]


def _require_weights(config: StageConfig) -> Path:
    if config.weights_dir is None:
        raise ValueError("a neural engine needs a weights folder (HY3D_WEIGHTS_DIR)")
    return config.weights_dir


def load_shape_engine(config: StageConfig) -> ShapeEngine:
    """The shape engine ``config`` selects; raises :class:`~hy3d_serving.weights.WeightsError` if incomplete
    (with ``config.require_weights`` also when no weights folder is set: no built-in fallback)."""
    if config.require_weights:
        check_required_weights(config.weights_dir, SHAPE_FILES, "shape_dit")
    engine_class = NeuralShapeEngine if config.weights_dir else BuiltinShapeEngine
    engine = engine_class(config)
    logger.info("shape engine %s loaded (device=%s, dtype=%s)", engine.name, config.device, config.dtype)
    return engine


def load_paint_engine(config: StageConfig) -> PaintEngine:
    """The paint engine ``config`` selects; raises :class:`~hy3d_serving.weights.WeightsError` if incomplete
    (with ``config.require_weights`` also when no weights folder is set: no built-in fallback)."""
    if config.require_weights:
        check_required_weights(config.weights_dir, PAINT_FILES, "paint_pbr")
    engine_class = NeuralPaintEngine if config.weights_dir else BuiltinPaintEngine
    engine = engine_class(config)
    logger.info("paint engine %s loaded (device=%s, dtype=%s, sizes=%s)", engine.name, config.device,
                config.dtype, config.paint_sizes or "defaults")
    if engine_class is BuiltinPaintEngine or config.device == "cpu":  # the renderer and the bake run on the CPU
        from hy3dpaint.bake import compile_cpu_loops

        logger.info("paint: CPU loops of the renderer and the bake compiled in %.1f s", compile_cpu_loops())
    return engine


def load_background_remover(config: StageConfig | None = None) -> Any:
    """The background remover of the preprocess stage (rembg when its model file is local, else classical).

    With ``config.require_weights`` there is no classical fallback: raises
    :class:`~hy3d_serving.weights.WeightsError` naming the missing model path (or package).
    """
    from hy3dshape import BackgroundRemover

    if config is not None and config.require_weights:
        try:
            remover = BackgroundRemover(method="rembg")
        except RuntimeError as error:
            raise WeightsError(f"preprocess: HY3D_REQUIRE_WEIGHTS is set and background removal is on, "
                               f"but {error}") from error
    else:
        remover = BackgroundRemover()
    logger.info("background remover loaded (method=%s)", remover.method)
    return remover
