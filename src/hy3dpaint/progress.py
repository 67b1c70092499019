"""Progress reporting of the paint pipelines: ``callback(phase, done, total)`` at step boundaries.

Phases, in order: ``paint:uv``, ``paint:render`` (per view), ``paint:diffusion`` (per multiview
denoising step, neural only), ``paint:upscale`` (per view, neural only), ``paint:bake`` (bake, then
each material's inpainting). Each phase ends with ``done == total``. Whatever the callback raises
(a cancellation, for instance) propagates to the caller.
"""

from __future__ import annotations

from collections.abc import Callable

ProgressCallback = Callable[[str, int, int], None]

PHASE_UV = "paint:uv"
PHASE_RENDER = "paint:render"
PHASE_DIFFUSION = "paint:diffusion"
PHASE_UPSCALE = "paint:upscale"
PHASE_BAKE = "paint:bake"


def report(callback: ProgressCallback | None, phase: str, done: int, total: int) -> None:
    """Call ``callback(phase, done, total)`` when a callback is given."""
    if callback is not None:
        callback(phase, int(done), int(total))
