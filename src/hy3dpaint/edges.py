"""Canny edges and box morphology in torch, bit for bit as OpenCV's, for images on any device.

The bake marks pixels near depth discontinuities and near the silhouette as unreliable
(``bake.reliable_pixels``): Canny edges of an 8-bit depth image, dilated with a box, and the
visibility mask eroded with the same box. On the CPU OpenCV does this fastest; on a CUDA device
these functions do the same in torch, so the image never leaves the device.

``canny`` follows ``cv2.Canny(image, low, high)`` with ``apertureSize=3`` and ``L2gradient=False``:
3x3 Sobel derivatives with replicated borders, magnitude ``|dx| + |dy|``, non-maximum suppression
in OpenCV's four sectors with its fixed-point tangent (``TG22``) and its strict/non-strict
comparisons against a zero-padded magnitude, thresholds ``floor(low)`` / ``floor(high)`` with strict
``>``, then hysteresis (8-connected growth from the strong pixels through the candidates).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: Fixed-point shift and tan(22.5 deg) of OpenCV's Canny sector test.
CANNY_SHIFT = 15
TG22 = int(0.4142135623730950488016887242097 * (1 << CANNY_SHIFT) + 0.5)
#: Hysteresis growth steps between two convergence checks (each check synchronises with the device).
HYSTERESIS_STEPS_PER_CHECK = 16


def _sobel(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """3x3 Sobel dx, dy (int32) of an integer image [H, W], borders replicated.

    Computed in float32 (replicate padding is not implemented for integers on every device); the
    values are small integers (|d| <= 4 * 255), so the arithmetic is exact.
    """
    padded = F.pad(image[None, None].to(torch.float32), (1, 1, 1, 1), mode="replicate")[0, 0]
    rows, cols = image.shape

    def at(dy: int, dx: int) -> torch.Tensor:
        return padded[1 + dy: 1 + dy + rows, 1 + dx: 1 + dx + cols]

    dx = (at(-1, 1) - at(-1, -1)) + 2 * (at(0, 1) - at(0, -1)) + (at(1, 1) - at(1, -1))
    dy = (at(1, -1) - at(-1, -1)) + 2 * (at(1, 0) - at(-1, 0)) + (at(1, 1) - at(-1, 1))
    return dx.to(torch.int32), dy.to(torch.int32)


def canny(image: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Bool edge map [H, W] of a uint8 image [H, W]; equals ``cv2.Canny(image, low, high) > 0``."""
    if image.ndim != 2:
        raise ValueError(f"canny takes a single-channel image [H, W], got shape {list(image.shape)}")
    low_i, high_i = math.floor(low), math.floor(high)
    if low_i > high_i:
        low_i, high_i = high_i, low_i
    dx, dy = _sobel(image)
    magnitude = dx.abs() + dy.abs()
    padded = F.pad(magnitude, (1, 1, 1, 1))  # the magnitude outside the image is 0
    rows, cols = magnitude.shape

    def neighbour(dy_: int, dx_: int) -> torch.Tensor:
        return padded[1 + dy_: 1 + dy_ + rows, 1 + dx_: 1 + dx_ + cols]

    x = dx.abs()
    y = dy.abs() << CANNY_SHIFT
    tg22x = x * TG22
    tg67x = tg22x + (x << (CANNY_SHIFT + 1))
    horizontal = y < tg22x
    vertical = ~horizontal & (y > tg67x)
    diagonal = ~horizontal & ~vertical
    same_sign = (dx ^ dy) >= 0  # s = +1: the up-left / down-right diagonal
    m = magnitude
    keep_horizontal = (m > neighbour(0, -1)) & (m >= neighbour(0, 1))
    keep_vertical = (m > neighbour(-1, 0)) & (m >= neighbour(1, 0))
    keep_diagonal = torch.where(same_sign, (m > neighbour(-1, -1)) & (m > neighbour(1, 1)),
                                (m > neighbour(-1, 1)) & (m > neighbour(1, -1)))
    maximal = (horizontal & keep_horizontal) | (vertical & keep_vertical) | (diagonal & keep_diagonal)
    candidate = maximal & (m > low_i)
    edges = candidate & (m > high_i)
    return _hysteresis(edges, candidate)


def _hysteresis(strong: torch.Tensor, candidate: torch.Tensor) -> torch.Tensor:
    """Grow ``strong`` through 8-connected ``candidate`` pixels until nothing changes."""
    edges = strong
    count = int(edges.sum())
    while True:
        for _ in range(HYSTERESIS_STEPS_PER_CHECK):
            grown = F.max_pool2d(edges[None, None].to(torch.float32), 3, stride=1, padding=1)[0, 0] > 0
            edges = edges | (grown & candidate)
        new_count = int(edges.sum())
        if new_count == count:
            return edges
        count = new_count


def dilate_box(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Bool [H, W]: ``cv2.dilate`` with a ``(2 radius + 1)^2`` box (outside the image adds nothing)."""
    if radius <= 0:
        return mask.clone()
    size = 2 * radius + 1
    return F.max_pool2d(mask[None, None].to(torch.float32), size, stride=1, padding=radius)[0, 0] > 0


def erode_box(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Bool [H, W]: ``cv2.erode`` with a ``(2 radius + 1)^2`` box and the outside of the image set (1)."""
    if radius <= 0:
        return mask.clone()
    return ~dilate_box(~mask, radius)
