"""Image preprocessing of the shape stage (``ImageProcessorV2``), FACTS §2.

The object (non-zero alpha) is cropped, scaled so that its longer side fills ``1 - border_ratio``
of a square canvas, centred, composited on white and resized to ``size`` x ``size``. Every step
reproduces upstream's OpenCV calls so that the pixels are identical.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

logger = logging.getLogger(__name__)

#: Default side of the processed image (official config) and default border ratio.
DEFAULT_SIZE = 512
DEFAULT_BORDER_RATIO = 0.15

ImageInput = Image.Image | np.ndarray | str | Path


def _as_rgba_array(image: ImageInput) -> np.ndarray:
    """Any accepted image -> uint8 ``[H, W, 4]`` RGBA (opaque alpha when the input has none)."""
    if isinstance(image, (str, Path)):
        with Image.open(image) as opened:
            return np.asarray(opened.convert("RGBA")).copy()
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGBA")).copy()
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4):
            raise ValueError(
                f"image array must be uint8 [H, W, 3 or 4] (RGB or RGBA), got {image.dtype} {list(image.shape)}"
            )
        if image.shape[2] == 3:
            alpha = np.full(image.shape[:2] + (1,), 255, dtype=np.uint8)
            return np.concatenate([image, alpha], axis=2)
        return image
    raise TypeError(f"image must be a PIL image, a uint8 numpy array or a file path, got {type(image).__name__}")


def recenter(rgba: np.ndarray, border_ratio: float = DEFAULT_BORDER_RATIO) -> tuple[np.ndarray, np.ndarray]:
    """Centre the object of an RGBA image on a white square canvas (FACTS §2 steps 1-5).

    ``rgba`` is uint8 ``[H, W, 4]`` (``[H, W, 3]`` counts as fully opaque). Returns ``(rgb, mask)``:
    uint8 ``[S, S, 3]`` composited on white and uint8 ``[S, S, 1]``, with ``S = max(H, W)``. As upstream,
    the crop is ``[r0:r1, c0:c1]`` of the inclusive alpha box (last row and column dropped), resized
    with ``INTER_AREA`` on straight alpha, and composited in float32 with truncation.
    Raises ``ValueError`` when the alpha is empty or the object is a single row or column of pixels.
    """
    if not 0.0 <= border_ratio < 1.0:
        raise ValueError(f"border_ratio must be in [0, 1), got {border_ratio}")
    rgba = _as_rgba_array(rgba)
    height, width = rgba.shape[:2]
    side = max(height, width)
    rows, columns = np.nonzero(rgba[..., 3])
    if rows.size == 0:
        raise ValueError("the image has no object: its alpha channel (mask) is zero everywhere")
    top, bottom, left, right = rows.min(), rows.max(), columns.min(), columns.max()
    box_height, box_width = int(bottom - top), int(right - left)
    desired = int(side * (1 - border_ratio))
    if min(box_height, box_width) == 0:
        raise ValueError(
            f"the object mask spans {box_height + 1} row(s) and {box_width + 1} column(s); at least 2 of each are needed"
        )
    scale = desired / max(box_height, box_width)
    new_height, new_width = int(box_height * scale), int(box_width * scale)
    if min(new_height, new_width) == 0:
        raise ValueError(
            f"the object ({box_width} x {box_height} px) is too thin to be rescaled to {desired} px; "
            "crop the image closer to the object"
        )
    crop = np.ascontiguousarray(rgba[top:bottom, left:right])
    resized = cv2.resize(crop, (new_width, new_height), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((side, side, 4), dtype=np.uint8)
    row, column = (side - new_height) // 2, (side - new_width) // 2
    canvas[row : row + new_height, column : column + new_width] = resized

    alpha = canvas[..., 3:4].astype(np.float32) / 255
    rgb = canvas[..., :3].astype(np.float32) * alpha + 255 * (1 - alpha)
    rgb = rgb.clip(0, 255).astype(np.uint8)
    mask = (alpha * 255).clip(0, 255).astype(np.uint8)
    return rgb, mask


class ImageProcessorV2:
    """Preprocess images for the shape model: ``processor(image)`` -> ``{"image", "mask"}`` tensors.

    ``image`` is a PIL image, a uint8 ``[H, W, 3|4]`` array, a file path, or a list of those. Output:
    ``image`` float32 ``[B, 3, size, size]`` in [-1, 1] and ``mask`` float32 ``[B, 1, size, size]`` in
    [-1, 1] (passed along, unused by the model). A ``border_ratio`` given at construction (as in the
    official config) overrides the call argument, as upstream.
    """

    def __init__(self, size: int = DEFAULT_SIZE, border_ratio: float | None = None):
        if size < 1:
            raise ValueError(f"ImageProcessorV2: size must be positive, got {size}")
        self.size = int(size)
        self.border_ratio = border_ratio

    def load_image(
        self, image: ImageInput, border_ratio: float = DEFAULT_BORDER_RATIO, to_tensor: bool = True
    ) -> tuple[np.ndarray, np.ndarray] | tuple[torch.Tensor, torch.Tensor]:
        """One image -> (image, mask) at ``size``: uint8 ``[S, S, 3]`` / ``[S, S]`` arrays, or with
        ``to_tensor`` float32 ``[1, 3, S, S]`` / ``[1, 1, S, S]`` tensors in [-1, 1]."""
        rgb, mask = recenter(_as_rgba_array(image), border_ratio=border_ratio)
        rgb = cv2.resize(rgb, (self.size, self.size), interpolation=cv2.INTER_CUBIC)
        mask = cv2.resize(mask, (self.size, self.size), interpolation=cv2.INTER_NEAREST)
        if not to_tensor:
            return rgb, mask
        image_tensor = torch.from_numpy(rgb).float().permute(2, 0, 1).unsqueeze(0) / 255 * 2 - 1
        mask_tensor = torch.from_numpy(mask).float().unsqueeze(0).unsqueeze(0) / 255 * 2 - 1
        return image_tensor, mask_tensor

    def __call__(
        self, image: ImageInput | Sequence[ImageInput], border_ratio: float = DEFAULT_BORDER_RATIO, **_: object
    ) -> dict[str, torch.Tensor]:
        """Process one image or a list into a batch (see the class docstring)."""
        if self.border_ratio is not None:
            border_ratio = self.border_ratio
        images = list(image) if isinstance(image, (list, tuple)) else [image]
        if not images:
            raise ValueError("ImageProcessorV2: got an empty list of images")
        pairs = [self.load_image(item, border_ratio=border_ratio, to_tensor=True) for item in images]
        return {
            "image": torch.cat([pair[0] for pair in pairs], dim=0),
            "mask": torch.cat([pair[1] for pair in pairs], dim=0),
        }
