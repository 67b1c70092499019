"""The rasterizer's per-pixel loops compiled with numba, for tensors on the CPU.

Same operations, in the same order and precision, as the torch code of ``rasterizer`` (which runs on
every other device): float32 products and sums rounded one at a time (numba does not contract them
into fused multiply-adds without ``fastmath``), alpha formed in float64, the same z-buffer key. The
torch code works on blocks of candidate pixels, which is fast on a GPU and slow on one CPU core; a
loop over each triangle's pixels visits every pixel once. The tests compare both bit for bit.

Compiled on first use (about a second per kernel); the paint stage's warm-up pays it at load time.
"""

from __future__ import annotations

import math

import numba
import numpy as np

_ONE = np.float32(1.0)
_HALF = np.float32(0.5)


@numba.njit(nogil=True, cache=False)
def depth_keys(screen, faces, height, width, keys, quantization, face_bits):  # pragma: no cover - compiled
    """Scatter the smallest z-buffer key of every covered (face, pixel) pair into ``keys [H * W]``.

    ``screen [V, 3]`` float32, ``faces [F, 3]`` int64; key ``trunc(z_s * quantization) << face_bits |
    face + 1`` over fragments with barycentrics in [0, 1] and ``z_s >= 0``.
    """
    width_f = np.float32(width)
    height_f = np.float32(height)
    for face in range(faces.shape[0]):
        a, b, c = faces[face, 0], faces[face, 1], faces[face, 2]
        ax, ay, az = screen[a, 0], screen[a, 1], screen[a, 2]
        bx, by, bz = screen[b, 0], screen[b, 1], screen[b, 2]
        cx, cy, cz = screen[c, 0], screen[c, 1], screen[c, 2]
        if not (math.isfinite(ax) and math.isfinite(ay) and math.isfinite(bx) and math.isfinite(by)
                and math.isfinite(cx) and math.isfinite(cy)):
            continue  # covers no pixel centre (its barycentrics are not numbers)
        area = (cx - ax) * (by - ay) - (bx - ax) * (cy - ay)
        if area == 0:
            continue
        x_min, x_max = min(ax, bx, cx), max(ax, bx, cx)
        y_min, y_max = min(ay, by, cy), max(ay, by, cy)
        x_start = max(int(min(max(x_min, np.float32(-1.0)), width_f)), 0)
        y_start = max(int(min(max(y_min, np.float32(-1.0)), height_f)), 0)
        x_stop = int(math.ceil(min(max(x_max + _ONE, np.float32(0.0)), width_f)))
        y_stop = int(math.ceil(min(max(y_max + _ONE, np.float32(0.0)), height_f)))
        if x_stop <= x_start or y_stop <= y_start:
            continue
        cax, cay, bax, bay = cx - ax, cy - ay, bx - ax, by - ay
        inverse_area = _ONE / area
        for row in range(y_start, y_stop):
            dy = (np.float32(row) + _HALF) - ay
            for col in range(x_start, x_stop):
                dx = (np.float32(col) + _HALF) - ax
                beta = (cax * dy - dx * cay) * inverse_area
                gamma = (dx * bay - bax * dy) * inverse_area
                if not (min(beta, gamma) >= 0 and max(beta, gamma) <= 1):
                    continue
                alpha = np.float32(1.0 - np.float64(beta) - np.float64(gamma))
                depth = alpha * az + beta * bz + gamma * cz
                if alpha < 0 or depth < 0:
                    continue
                key = (np.int64(np.int32(depth * quantization)) << face_bits) | (face + 1)
                pixel = row * width + col
                if key < keys[pixel]:
                    keys[pixel] = key


@numba.njit(nogil=True, cache=False)
def covered_barycentrics(screen, w, faces, face_ids, pixels, out):  # pragma: no cover - compiled
    """Perspective-corrected barycentrics ``out [P, 3]`` of the covered ``pixels [P]`` (flat indices
    into ``face_ids [H * W]``, face + 1), recomputed at each pixel centre."""
    width = face_ids.shape[1]
    flat = face_ids.reshape(-1)
    for index in range(pixels.shape[0]):
        pixel = pixels[index]
        face = flat[pixel] - 1
        a, b, c = faces[face, 0], faces[face, 1], faces[face, 2]
        ax, ay, bx, by, cx, cy = screen[a, 0], screen[a, 1], screen[b, 0], screen[b, 1], screen[c, 0], screen[c, 1]
        px = np.float32(pixel % width) + _HALF
        py = np.float32(pixel // width) + _HALF
        area = (cx - ax) * (by - ay) - (bx - ax) * (cy - ay)
        beta_area = (cx - ax) * (py - ay) - (px - ax) * (cy - ay)
        gamma_area = (px - ax) * (by - ay) - (bx - ax) * (py - ay)
        inverse_area = _ONE / area
        beta = beta_area * inverse_area
        gamma = gamma_area * inverse_area
        alpha = np.float32(1.0 - np.float64(beta) - np.float64(gamma))
        alpha = alpha / w[a]
        beta = beta / w[b]
        gamma = gamma / w[c]
        normaliser = _ONE / ((alpha + beta) + gamma)
        out[index, 0] = alpha * normaliser
        out[index, 1] = beta * normaliser
        out[index, 2] = gamma * normaliser


@numba.njit(nogil=True, cache=False)
def interpolate(attributes, faces, face_ids, pixels, weights, out):  # pragma: no cover - compiled
    """``out[i] = (w0 * attr[v0] + w1 * attr[v1]) + w2 * attr[v2]`` at the covered ``pixels``."""
    flat = face_ids.reshape(-1)
    for index in range(pixels.shape[0]):
        face = flat[pixels[index]] - 1
        a, b, c = faces[face, 0], faces[face, 1], faces[face, 2]
        wa, wb, wc = weights[index, 0], weights[index, 1], weights[index, 2]
        for channel in range(attributes.shape[1]):
            out[index, channel] = (wa * attributes[a, channel] + wb * attributes[b, channel]) + wc * attributes[c, channel]
