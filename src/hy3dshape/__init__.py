"""hy3dshape: the Hunyuan3D-2.1 shape stage (image -> mesh), plus the built-in silhouette engine.

Public names are imported lazily so that ``import hy3dshape`` stays cheap inside a Triton stub.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Hunyuan3DDiTFlowMatchingPipeline": "hy3dshape.pipelines",
    "ImageProcessorV2": "hy3dshape.preprocessors",
    "FlowMatchEulerDiscreteScheduler": "hy3dshape.schedulers",
    "MCSurfaceExtractor": "hy3dshape.surface_extractors",
    "VanillaVolumeDecoder": "hy3dshape.volume_decoders",
    "HierarchicalVolumeDecoder": "hy3dshape.volume_decoders",
    "FlashVDMVolumeDecoder": "hy3dshape.volume_decoders",
    "FloaterRemover": "hy3dshape.postprocessors",
    "DegenerateFaceRemover": "hy3dshape.postprocessors",
    "FaceReducer": "hy3dshape.postprocessors",
    "postprocess_mesh": "hy3dshape.postprocessors",
    "BackgroundRemover": "hy3dshape.rembg",
    "SilhouetteLiftingPipeline": "hy3dshape.silhouette",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hy3dshape' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
