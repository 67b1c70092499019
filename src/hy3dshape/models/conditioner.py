"""Image conditioner of the shape model (FACTS §3): DINOv2 tokens of the preprocessed image.

``SingleImageEncoder(image=x)["main"]`` maps a ``[B, 3, S, S]`` batch in [-1, 1] to DINOv2's
``last_hidden_state`` ``[B, tokens, hidden]`` (CLS token included); the unconditional context is zeros.
The network is transformers' ``Dinov2Model`` (``hy3dcore.image_encoders``); its parameters are
``main_image_encoder.model.<Dinov2Model keys>``, read from the official checkpoint's transformers 4.x
names through ``CHECKPOINT_KEY_MAP``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from hy3dcore.image_encoders import DINOV2_KEY_MAP, IMAGENET_MEAN, IMAGENET_STD, build_dinov2

if TYPE_CHECKING:
    from transformers import Dinov2Config

logger = logging.getLogger(__name__)

#: How the conditioner's keys are named in the official checkpoint (the DINOv2 map; the prefix passes through).
CHECKPOINT_KEY_MAP = DINOV2_KEY_MAP


class DinoImageEncoder(nn.Module):
    """DINOv2 with its input transform: [0, 1] -> resize shorter side to ``image_size`` (bilinear,
    antialiased) -> centre crop -> ImageNet normalisation -> ``last_hidden_state``."""

    def __init__(
        self,
        config: Dinov2Config | Mapping[str, Any],
        image_size: int = 518,
        use_cls_token: bool = True,
    ):
        super().__init__()
        self.model = build_dinov2(config)
        self.image_size = int(image_size)
        self.use_cls_token = bool(use_cls_token)
        patches = (self.image_size // self.model.config.patch_size) ** 2
        self.num_tokens = patches + (1 if self.use_cls_token else 0)

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    def transform(self, image: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` in [0, 1] -> normalised ``[B, 3, image_size, image_size]`` (torchvision's
        ``Resize(image_size, antialias=True)``, ``CenterCrop``, ``Normalize``, in the input dtype)."""
        height, width = image.shape[-2:]
        short, long = min(height, width), max(height, width)
        new_short, new_long = self.image_size, int(self.image_size * long / short)
        size = (new_short, new_long) if height <= width else (new_long, new_short)
        if (height, width) != size:
            image = F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)
        top = int(round((size[0] - self.image_size) / 2.0))
        left = int(round((size[1] - self.image_size) / 2.0))
        image = image[..., top : top + self.image_size, left : left + self.image_size]
        mean = torch.tensor(IMAGENET_MEAN, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
        return (image - mean) / std

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` in [-1, 1] -> ``[B, num_tokens, hidden]``. The transform runs in float32, then
        the pixels are cast to the weights' dtype and device."""
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"the image encoder expects [B, 3, H, W] in [-1, 1], got {list(image.shape)}")
        weight = self.model.embeddings.patch_embeddings.projection.weight
        image = image.to(device=weight.device, dtype=torch.float32)
        pixels = self.transform((image + 1) / 2).to(weight.dtype)
        tokens = self.model(pixel_values=pixels).last_hidden_state
        return tokens if self.use_cls_token else tokens[:, 1:]

    def unconditional_embedding(self, batch_size: int) -> torch.Tensor:
        """Zeros ``[batch_size, num_tokens, hidden]`` in the weights' dtype and device."""
        weight = self.model.layernorm.weight
        return torch.zeros(batch_size, self.num_tokens, self.hidden_size, dtype=weight.dtype, device=weight.device)


#: Image encoder types accepted in ``main_image_encoder.type`` of the config.
IMAGE_ENCODER_TYPES = {"DinoImageEncoder": DinoImageEncoder}


class SingleImageEncoder(nn.Module):
    """Conditioner with one image encoder: ``forward(image=...)`` -> ``{"main": tokens}``."""

    def __init__(self, main_image_encoder: Mapping[str, Any]):
        super().__init__()
        encoder_type = main_image_encoder.get("type")
        if encoder_type not in IMAGE_ENCODER_TYPES:
            raise ValueError(
                f"conditioner: main_image_encoder.type {encoder_type!r} is not supported; "
                f"allowed: {sorted(IMAGE_ENCODER_TYPES)}"
            )
        kwargs = dict(main_image_encoder.get("kwargs") or {})
        allowed = {"config", "image_size", "use_cls_token"}
        unknown = sorted(set(kwargs) - allowed)
        if unknown:
            raise ValueError(f"conditioner: unknown main_image_encoder.kwargs {unknown}; allowed: {sorted(allowed)}")
        if "config" not in kwargs:
            raise ValueError("conditioner: main_image_encoder.kwargs.config (the inline DINOv2 config) is required")
        self.main_image_encoder = IMAGE_ENCODER_TYPES[encoder_type](**kwargs)

    def forward(self, image: torch.Tensor, mask: torch.Tensor | None = None, **_: Any) -> dict[str, torch.Tensor]:
        """``image`` ``[B, 3, H, W]`` in [-1, 1] -> ``{"main": [B, tokens, hidden]}``; ``mask`` is ignored."""
        return {"main": self.main_image_encoder(image)}

    def unconditional_embedding(self, batch_size: int) -> dict[str, torch.Tensor]:
        """``{"main": zeros [batch_size, tokens, hidden]}`` (not the encoding of a blank image)."""
        return {"main": self.main_image_encoder.unconditional_embedding(batch_size)}
