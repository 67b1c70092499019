"""The bake's per-texel loops compiled with numba, for tensors on the CPU.

Same operations, order and precision as the torch code of ``bake`` (used on every other device):
float32 products and sums rounded one at a time (no fused multiply-adds without ``fastmath``) and
float32 constants. The torch code runs a dozen whole-array kernels over millions of texels; on one
CPU core a single pass that keeps each texel in registers is several times faster. The tests compare
both bit for bit.
"""

from __future__ import annotations

import numba
import numpy as np

_ONE = np.float32(1.0)
_HALF = np.float32(0.5)


@numba.njit(nogil=True, cache=False)
def seen_texels(camera, first, p00, p11, width, height, usable_depth, tolerance,
                index, pixel, fx, fy):  # pragma: no cover - compiled
    """Texels of ``camera [N, >=3]`` (camera-space x, y, z, float32) that a view sees.

    A texel is seen when its projection ``(x p00, y p11)`` lies in [-1, 1]^2 and its depth is within
    ``tolerance`` of ``usable_depth`` (NaN where a pixel cannot paint) at its pixel. Writes, for the
    seen ones, the table index (``first`` + row), flat pixel and continuous pixel coordinates into the
    output arrays; returns how many.
    """
    width_f = np.float32(width)
    height_f = np.float32(height)
    count = 0
    for row in range(camera.shape[0]):
        x = camera[row, 0] * p00
        y = camera[row, 1] * p11
        if not (abs(x) <= _ONE and abs(y) <= _ONE):
            continue
        px = (min(max(x, -_ONE), _ONE) * _HALF + _HALF) * width_f
        py = (min(max(y, -_ONE), _ONE) * _HALF + _HALF) * height_f
        ix = min(max(np.int32(px), 0), width - 1)
        iy = min(max(np.int32(py), 0), height - 1)
        flat = iy * width + ix
        if not (abs(camera[row, 2] - usable_depth[flat]) < tolerance):
            continue
        index[count] = first + row
        pixel[count] = flat
        fx[count] = px
        fy[count] = py
        count += 1
    return count


@numba.njit(nogil=True, cache=False)
def accumulate(merged, trust, pixels, texels, corners, wx, wy, weight):  # pragma: no cover - compiled
    """``merged[t] += bilinear(pixels, corners) * w`` and ``trust[t] += w`` for every seen texel ``t``.

    ``pixels [R * R, C]`` float32; bilinear as ``top = c00 (1 - wx) + c10 wx``, ``bottom = c01 (1 - wx)
    + c11 wx``, ``top (1 - wy) + bottom wy``.
    """
    for m in range(texels.shape[0]):
        t = texels[m]
        w = weight[m]
        fx, fy = wx[m, 0], wy[m, 0]
        gx, gy = _ONE - fx, _ONE - fy
        c00, c10, c01, c11 = corners[m, 0], corners[m, 1], corners[m, 2], corners[m, 3]
        for channel in range(pixels.shape[1]):
            top = pixels[c00, channel] * gx + pixels[c10, channel] * fx
            bottom = pixels[c01, channel] * gx + pixels[c11, channel] * fx
            merged[t, channel] = merged[t, channel] + (top * gy + bottom * fy) * w
        trust[t] = trust[t] + w
