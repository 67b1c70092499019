"""DINOv2-giant image encoder of the texture stage (FACTS §7.1): the style image -> [1, 257, 1536].

The network is transformers' ``Dinov2Model`` loaded by ``hy3dcore.image_encoders.load_dinov2`` (the
official ``facebook/dinov2-giant`` files, transformers 4.x names, SwiGLU MLP); the preprocessing is
Hugging Face's standard DINOv2 image processor, written here: resize the shortest edge to 256 (PIL
bicubic), centre-crop 224, scale to [0, 1], normalise with ImageNet mean/std. Runs in fp16 on CUDA
(as upstream) and fp32 elsewhere by default.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hy3dcore.image_encoders import IMAGENET_MEAN, IMAGENET_STD, load_dinov2

logger = logging.getLogger(__name__)

#: Preprocessing of the standard DINOv2 image processor.
RESIZE_SHORTEST_EDGE = 256
CROP_SIZE = 224


def preprocess_for_dino(image: Image.Image) -> torch.Tensor:
    """PIL image -> normalised pixel values [1, 3, 224, 224] (float32).

    Shortest edge resized to 256 with PIL bicubic (the other edge scaled, truncated), centre crop
    224 (offset ``(size - 224) // 2``), RGB / 255, then ``(x - mean) / std``.
    """
    rgb = image.convert("RGB")
    width, height = rgb.size
    if min(width, height) < 1:
        raise ValueError(f"image is {width}x{height}; DINO needs a non-empty image")
    if width <= height:
        size = (RESIZE_SHORTEST_EDGE, int(RESIZE_SHORTEST_EDGE * height / width))
    else:
        size = (int(RESIZE_SHORTEST_EDGE * width / height), RESIZE_SHORTEST_EDGE)
    resized = rgb.resize(size, Image.Resampling.BICUBIC)
    left, top = (size[0] - CROP_SIZE) // 2, (size[1] - CROP_SIZE) // 2
    cropped = resized.crop((left, top, left + CROP_SIZE, top + CROP_SIZE))
    pixels = np.asarray(cropped, dtype=np.float32) / 255.0
    normalised = (pixels - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return torch.from_numpy(normalised.transpose(2, 0, 1).copy()).unsqueeze(0)


class DinoImageEncoder:
    """``encoder(image)`` -> DINOv2 ``last_hidden_state`` [1, 1 + patches, hidden] (CLS first)."""

    def __init__(self, model: torch.nn.Module):
        self.model = model.eval().requires_grad_(False)

    @classmethod
    def from_pretrained(cls, folder: str | Path, *, device: torch.device | str = "cpu",
                        dtype: torch.dtype | None = None) -> DinoImageEncoder:
        """Load a Hugging Face DINOv2 folder (``config.json`` + ``model.safetensors``), never downloading.

        ``dtype`` defaults to fp16 on CUDA, fp32 elsewhere. Raises ``hy3dcore.loading.WeightsError``
        naming the missing file or the first missing / unexpected key.
        """
        device = torch.device(device)
        dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)
        return cls(load_dinov2(folder, device=device, dtype=dtype))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @torch.no_grad()
    def __call__(self, image: Image.Image) -> torch.Tensor:
        """Encode one image; returns [1, 1 + patches, hidden] in the model's dtype."""
        pixel_values = preprocess_for_dino(image).to(device=self.device, dtype=self.dtype)
        return self.model(pixel_values=pixel_values).last_hidden_state
