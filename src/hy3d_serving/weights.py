"""The official Hunyuan3D-2.1 weights layout, and the check that a weights folder is complete.

``HY3D_WEIGHTS_DIR`` points at a folder laid out like the Hugging Face repositories::

    <weights>/hunyuan3d-dit-v2-1/config.yaml + model.fp16.ckpt (or model.fp16.safetensors)
    <weights>/hunyuan3d-vae-v2-1/...                (shipped with the official repo, unused here)
    <weights>/hunyuan3d-paintpbr-v2-1/model_index.json, unet/, vae/, scheduler/
    <weights>/dinov2-giant/config.json + model.safetensors
    <weights>/RealESRGAN_x4plus.pth
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

SHAPE_SUBFOLDER = "hunyuan3d-dit-v2-1"
PAINT_SUBFOLDER = "hunyuan3d-paintpbr-v2-1"
DINO_SUBFOLDER = "dinov2-giant"
REALESRGAN_FILE = "RealESRGAN_x4plus.pth"

#: Files the shape stage needs; an inner tuple lists alternatives (any one of them will do).
SHAPE_FILES: tuple[str | tuple[str, ...], ...] = (
    f"{SHAPE_SUBFOLDER}/config.yaml",
    (f"{SHAPE_SUBFOLDER}/model.fp16.ckpt", f"{SHAPE_SUBFOLDER}/model.fp16.safetensors"),
)
#: Files the texture stage needs.
PAINT_FILES: tuple[str | tuple[str, ...], ...] = (
    f"{PAINT_SUBFOLDER}/model_index.json",
    f"{PAINT_SUBFOLDER}/unet/config.json",
    (f"{PAINT_SUBFOLDER}/unet/diffusion_pytorch_model.bin",
     f"{PAINT_SUBFOLDER}/unet/diffusion_pytorch_model.safetensors"),
    f"{PAINT_SUBFOLDER}/vae/config.json",
    (f"{PAINT_SUBFOLDER}/vae/diffusion_pytorch_model.bin",
     f"{PAINT_SUBFOLDER}/vae/diffusion_pytorch_model.safetensors"),
    f"{PAINT_SUBFOLDER}/scheduler/scheduler_config.json",
    f"{DINO_SUBFOLDER}/config.json",
    f"{DINO_SUBFOLDER}/model.safetensors",
    REALESRGAN_FILE,
)

class WeightsError(FileNotFoundError):
    """The weights folder is missing a file a stage needs; the message names the file."""


def check_weights(weights_dir: Path, required: Sequence[str | tuple[str, ...]], stage: str) -> None:
    """Raise :class:`WeightsError` naming the first missing entry of ``required`` under ``weights_dir``."""
    if not weights_dir.is_dir():
        raise WeightsError(f"{stage}: HY3D_WEIGHTS_DIR {str(weights_dir)!r} is not a directory")
    for entry in required:
        alternatives = (entry,) if isinstance(entry, str) else entry
        if not any((weights_dir / name).is_file() for name in alternatives):
            missing = " or ".join(str(weights_dir / name) for name in alternatives)
            raise WeightsError(
                f"{stage}: the weights folder is incomplete: missing {missing} "
                f"(expected the official Hunyuan3D-2.1 layout, see README 'Real weights')"
            )
