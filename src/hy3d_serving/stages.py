"""What each Triton model computes, as plain functions on numpy arrays (no Triton needed).

The Triton models call these; :func:`run_in_process` chains them exactly as ``hy3d_ensemble`` does, so
the GLB served by Triton can be compared byte for byte with the in-process result. Each function takes an
optional step callback ``callback(phase, done, total)`` (see :mod:`hy3d_serving.progress`), called at
least at the start and the end of each of its phases and handed on to the engines; it may raise
``RequestCancelled`` to stop the work.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from hy3d_client import contract

from .engines import PAINT_NONE, PaintEngine, ShapeEngine
from .errors import EngineError
from .logs import timed
from .progress import StepCallback

logger = logging.getLogger(__name__)

#: Alpha value of a fully opaque pixel.
OPAQUE = 255
#: Parameters consumed by ``shape_dit`` and ``paint_pbr`` (Triton tensor names).
SHAPE_PARAMETERS = ("SEED", "OCTREE_RESOLUTION", "NUM_INFERENCE_STEPS", "GUIDANCE_SCALE", "FACE_COUNT")
PAINT_PARAMETERS = ("TEXTURE", "SEED", "TEXTURE_FORMAT")


@dataclass(frozen=True)
class MeshArrays:
    """A mesh as it travels between the stages: FP32 ``[V, 3]`` vertices, INT32 ``[F, 3]`` faces."""

    vertices: np.ndarray
    faces: np.ndarray


@dataclass(frozen=True)
class Asset:
    """The ensemble's outputs."""

    glb: bytes
    textured: bool
    seed_used: int
    engine: str


def preprocess_image(image: np.ndarray, remove_background: bool, remover: Any,
                     callback: StepCallback | None = None) -> np.ndarray:
    """``[H, W, 3|4]`` uint8 image -> ``[H, W, 4]`` uint8 RGBA whose alpha is the object mask.

    An RGBA image keeps its alpha. An RGB image goes through ``remover`` when ``remove_background`` is
    true, else the whole image is the object. Raises ``ContractError`` (IMAGE) when the mask is empty
    or the remover finds no object.
    """
    from PIL import Image

    _step(callback, "preprocess", 0, 1)
    if image.shape[2] == 4:
        rgba = image
    elif remove_background:
        with timed(logger, f"background removal ({remover.method})"):
            try:
                rgba = np.asarray(remover(Image.fromarray(image, "RGB")).convert("RGBA"))
            except ValueError as error:  # the remover's verdict on this image, e.g. "found no object"
                raise contract.ContractError(contract.IMAGE_INPUT, str(error)) from error
    else:
        rgba = np.concatenate([image, np.full(image.shape[:2] + (1,), OPAQUE, np.uint8)], axis=2)
    if not rgba[:, :, 3].any():
        cause = "its alpha channel is 0 everywhere" if image.shape[2] == 4 else "background removal left nothing"
        raise contract.ContractError(contract.IMAGE_INPUT, f"the object mask is empty: {cause}")
    check_object_mask(rgba, contract.IMAGE_INPUT)
    _step(callback, "preprocess", 1, 1)
    return np.ascontiguousarray(rgba, dtype=np.uint8)


def check_object_mask(rgba: np.ndarray, field: str) -> None:
    """Raise ``ContractError`` naming ``field`` unless the shape stage can frame the object of ``rgba``
    (hy3dshape's recentring: a mask of at least 2 x 2 px that can be scaled to the canvas)."""
    from hy3dshape.preprocessors import recenter

    try:
        recenter(rgba)
    except ValueError as error:
        raise contract.ContractError(field, f"the object mask is unusable: {error}") from error


def make_shape(engine: ShapeEngine, rgba: np.ndarray, params: Mapping[str, Any],
               callback: StepCallback | None = None) -> MeshArrays:
    """Run the shape engine on ``rgba`` and post-process the mesh to at most ``face_count`` faces."""
    from PIL import Image

    from hy3dshape import postprocess_mesh

    with timed(logger, f"shape generation ({engine.name})"):
        mesh = engine.generate(
            Image.fromarray(rgba, "RGBA"), seed=params["seed"], octree_resolution=params["octree_resolution"],
            num_inference_steps=params["num_inference_steps"], guidance_scale=params["guidance_scale"],
            callback=callback,
        )
    _step(callback, "shape:postprocess", 0, 1)
    with timed(logger, "mesh post-processing"):
        mesh = postprocess_mesh(mesh, params["face_count"])
    _step(callback, "shape:postprocess", 1, 1)
    if len(mesh.faces) == 0:
        raise EngineError("post-processing left an empty mesh")
    logger.info("mesh: %d vertices, %d faces", len(mesh.vertices), len(mesh.faces))
    return MeshArrays(np.ascontiguousarray(mesh.vertices, dtype=np.float32),
                      np.ascontiguousarray(mesh.faces, dtype=np.int32))


def make_asset(engine: PaintEngine, shape_engine: str, mesh: MeshArrays, rgba: np.ndarray,
               params: Mapping[str, Any], callback: StepCallback | None = None) -> Asset:
    """Texture the mesh (when ``params["texture"]``) and export it as one binary glTF 2.0 asset, its
    textures in ``params["texture_format"]`` (the contract default when absent)."""
    import trimesh
    from PIL import Image

    from hy3dpaint import export_glb

    shape = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    if params["texture"]:
        with timed(logger, f"texturing ({engine.name})"):
            shape = engine.paint(shape, Image.fromarray(rgba, "RGBA"), seed=params["seed"], callback=callback)
        paint_name = engine.name
    else:
        paint_name = PAINT_NONE
    _step(callback, "export", 0, 1)
    with timed(logger, "GLB export"):
        glb = export_glb(shape, texture_format=params.get("texture_format", contract.DEFAULTS["texture_format"]))
    _step(callback, "export", 1, 1)
    logger.info("GLB: %d bytes", len(glb))
    return Asset(glb, bool(params["texture"]), int(params["seed"]), f"shape={shape_engine};paint={paint_name}")


def run_in_process(image: np.ndarray, parameters: Mapping[str, Any], *, remover: Any,
                   shape_engine: ShapeEngine, paint_engine: PaintEngine,
                   callback: StepCallback | None = None) -> Asset:
    """The ensemble without Triton: validate, preprocess, shape, paint, export.

    ``parameters`` is keyed by JSON key (``seed``); absent ones take the contract defaults.
    """
    image = contract.validate_image(image)
    params = contract.validate_parameters(parameters)
    rgba = preprocess_image(image, bool(params["remove_background"]), remover, callback)
    mesh = make_shape(shape_engine, rgba, params, callback)
    return make_asset(paint_engine, shape_engine.name, mesh, rgba, params, callback)


def _step(callback: StepCallback | None, phase: str, done: int, total: int) -> None:
    if callback is not None:
        callback(phase, done, total)
