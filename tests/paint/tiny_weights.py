"""A complete tiny weights directory in the official layout, for tests that run the texture stage.

``build_tiny_paint_weights(root)`` writes, under ``root``:

* ``hunyuan3d-paintpbr-v2-1/``: a copy of the tiny multiview model of the parity vectors
  (``tests/data/paint/model/hunyuan3d-paintpbr-tiny``: model_index.json, unet/, vae/, scheduler/);
* ``dinov2-giant/``: ``config.json`` + ``model.safetensors`` of a DINOv2 with giant's width (1536,
  what the UNet's DINO projector expects), SwiGLU MLP and 518 px position grid, but 1 layer and a
  small MLP, with seeded random weights (fp16 on disk, about 30 MB);
* ``RealESRGAN_x4plus.pth``: the tiny RRDBNet of the SR vectors (``tests/data/paint/sr/rrdbnet_tiny.pth``).

Deterministic: the same ``root`` content on every call. Used by the paint tests and by the serving
integration test (which serves this folder through tritonserver).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

PAINT_DATA = Path(__file__).resolve().parent.parent / "data" / "paint"
TINY_MULTIVIEW_MODEL = PAINT_DATA / "model" / "hunyuan3d-paintpbr-tiny"
TINY_RRDBNET = PAINT_DATA / "sr" / "rrdbnet_tiny.pth"

#: DINOv2 config: giant's width, heads, patch, grid and SwiGLU; 1 layer and a narrow MLP.
TINY_DINO_CONFIG = {
    "model_type": "dinov2", "architectures": ["Dinov2Model"], "hidden_size": 1536, "num_hidden_layers": 1,
    "num_attention_heads": 24, "mlp_ratio": 1.0, "use_swiglu_ffn": True, "image_size": 518, "patch_size": 14,
    "num_channels": 3, "layer_norm_eps": 1e-6, "layerscale_value": 1.0, "qkv_bias": True, "hidden_act": "gelu",
    "torch_dtype": "float16",
}
DINO_SEED = 20250701
#: Standard deviation of the random DINO weights.
DINO_WEIGHT_STD = 0.02


def _tiny_dino_state_dict() -> dict[str, torch.Tensor]:
    from hy3dcore.image_encoders import dinov2_checkpoint_shapes

    generator = torch.Generator().manual_seed(DINO_SEED)
    state_dict = {}
    for name, shape in dinov2_checkpoint_shapes(TINY_DINO_CONFIG).items():  # the official file's names
        if name.endswith("bias"):
            value = torch.zeros(shape)
        elif name.endswith("lambda1") or ("norm" in name and len(shape) == 1):
            value = torch.ones(shape)
        else:
            value = torch.randn(shape, generator=generator) * DINO_WEIGHT_STD
        state_dict[name] = value.half()
    return state_dict


def build_tiny_paint_weights(root: Path) -> Path:
    """Write the tiny weights directory under ``root`` (created if needed) and return ``root``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    multiview = root / "hunyuan3d-paintpbr-v2-1"
    if multiview.exists():
        shutil.rmtree(multiview)
    shutil.copytree(TINY_MULTIVIEW_MODEL, multiview)
    dino = root / "dinov2-giant"
    dino.mkdir(exist_ok=True)
    (dino / "config.json").write_text(json.dumps(TINY_DINO_CONFIG, indent=1), encoding="utf-8")
    save_file(_tiny_dino_state_dict(), str(dino / "model.safetensors"))
    shutil.copyfile(TINY_RRDBNET, root / "RealESRGAN_x4plus.pth")
    return root


@pytest.fixture(autouse=True, scope="module")
def single_threaded_torch() -> Iterator[None]:
    """Run a test module's tiny models on one thread (restored afterwards).

    The tiny networks gain nothing from intra-op threads, and on a shared 2-core machine spinning
    worker threads made a denoising loop ten times slower.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
