"""Neural networks of the texture stage: the UNet 2.5D (with its attention processors and the
voxel-index RoPE), the VAE loader and the Real-ESRGAN RRDBNet.

Names are imported lazily so that importing the package stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "UNet2p5DConditionModel": "hy3dpaint.models.unet_2p5d",
    "Basic2p5DTransformerBlock": "hy3dpaint.models.transformer_2p5d",
    "RRDBNet": "hy3dpaint.models.rrdbnet",
    "load_autoencoder": "hy3dpaint.models.vae",
    "WeightsError": "hy3dcore.loading",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hy3dpaint.models' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
