"""The official Hunyuan3D-2.1 weights layout, and the check that a weights folder is complete.

``HY3D_WEIGHTS_DIR`` points at a folder laid out like the Hugging Face repositories::

    <weights>/hunyuan3d-dit-v2-1/config.yaml + model.fp16.ckpt (or model.fp16.safetensors)
    <weights>/hunyuan3d-paintpbr-v2-1/model_index.json, unet/, vae/, scheduler/
    <weights>/dinov2-giant/config.json + model.safetensors
    <weights>/RealESRGAN_x4plus.pth
    <weights>/u2net/u2net.onnx                     (rembg's model, where the image puts it;
                                                    read through HY3D_REMBG_MODEL by preprocess)

The official repository's ``hunyuan3d-vae-v2-1/`` duplicates the VAE inside ``model.fp16.ckpt`` and is
not read.

With ``require_weights`` (``HY3D_REQUIRE_WEIGHTS``) the folder must be set, and an empty file counts
as missing (an interrupted copy), so that a broken deployment fails its load instead of serving the
built-in engines.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hy3dcore.layout import DINO_SUBFOLDER, PAINT_SUBFOLDER, REALESRGAN_FILE, SHAPE_SUBFOLDER
from hy3dcore.loading import WeightsError  # the one error type of weights loading (no torch import)

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


def check_weights(weights_dir: Path, required: Sequence[str | tuple[str, ...]], stage: str, *,
                  non_empty: bool = False) -> None:
    """Raise :class:`WeightsError` naming the first missing entry of ``required`` under ``weights_dir``.

    With ``non_empty`` a file of zero bytes counts as missing.
    """
    if not weights_dir.is_dir():
        raise WeightsError(f"{stage}: HY3D_WEIGHTS_DIR {str(weights_dir)!r} is not a directory")

    def present(path: Path) -> bool:
        return path.is_file() and (not non_empty or path.stat().st_size > 0)

    for entry in required:
        alternatives = (entry,) if isinstance(entry, str) else entry
        if not any(present(weights_dir / name) for name in alternatives):
            missing = " or ".join(str(weights_dir / name) for name in alternatives)
            raise WeightsError(
                f"{stage}: the weights folder is incomplete: missing {missing} "
                f"(expected the official Hunyuan3D-2.1 layout, see README 'Real weights')"
            )


def check_required_weights(weights_dir: Path | None, required: Sequence[str | tuple[str, ...]],
                           stage: str) -> Path:
    """The fail-closed check (``require_weights``): the folder is set and holds every non-empty file.

    Returns the folder; raises :class:`WeightsError` naming the setting when it is unset, or the first
    missing (or empty) file.
    """
    if weights_dir is None:
        first = required[0] if isinstance(required[0], str) else required[0][0]
        raise WeightsError(
            f"{stage}: HY3D_REQUIRE_WEIGHTS is set but HY3D_WEIGHTS_DIR is unset: no weights folder to load "
            f"(expected <weights>/{first} ...; the built-in engines are not served in this mode)"
        )
    check_weights(weights_dir, required, stage, non_empty=True)
    return weights_dir
