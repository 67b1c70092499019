"""hy3dpaint: the Hunyuan3D-Paint 2.1 PBR texture stage (mesh + image -> textured GLB),
plus the built-in projection engine.

Public names are imported lazily so that ``import hy3dpaint`` stays cheap inside a Triton stub.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Hunyuan3DPaintPipeline": "hy3dpaint.pipeline",
    "Hunyuan3DPaintConfig": "hy3dpaint.pipeline",
    "mesh_uv_wrap": "hy3dpaint.uv",
    "UNet2p5DConditionModel": "hy3dpaint.models.unet_2p5d",
    "ProjectionTexturePipeline": "hy3dpaint.projection",
    "export_glb": "hy3dpaint.export",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hy3dpaint' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
