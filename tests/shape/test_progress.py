"""Progress callback convention (team rules): ``callback(phase, done, total)`` at step boundaries,
``shape:denoise`` once per sampler step, ``shape:decode`` per decoding chunk or level, done == total at
the end of each phase, and an exception raised by the callback propagates."""

from __future__ import annotations

import pytest
import torch
from shape_testdata import load_test_image, tiny_pipeline

from hy3dshape import SilhouetteLiftingPipeline

STEPS = 4


class CancelledError(Exception):
    pass


def _run(callback, **kwargs):
    return tiny_pipeline()(image=load_test_image(), num_inference_steps=STEPS, octree_resolution=24,
                           generator=torch.Generator().manual_seed(3), callback=callback, **kwargs)


def test_every_sampler_step_and_every_decoding_chunk_is_reported():
    calls = []
    (mesh,) = _run(lambda *args: calls.append(args), num_chunks=5000)
    denoise = [call for call in calls if call[0] == "shape:denoise"]
    decode = [call for call in calls if call[0] == "shape:decode"]
    assert denoise == [("shape:denoise", step, STEPS) for step in range(1, STEPS + 1)]  # the skipped step too
    chunks = -(-(25**3) // 5000)
    assert decode == [("shape:decode", chunk, chunks) for chunk in range(1, chunks + 1)]
    assert calls == denoise + decode and mesh is not None


def test_latent_output_reports_only_denoising():
    calls = []
    _run(lambda *args: calls.append(args), output_type="latent")
    assert {call[0] for call in calls} == {"shape:denoise"} and calls[-1] == ("shape:denoise", STEPS, STEPS)


@pytest.mark.parametrize("phase", ["shape:denoise", "shape:decode"])
def test_an_exception_from_the_callback_propagates(phase):
    def cancel(name, done, total):
        if name == phase:
            raise CancelledError(name)

    with pytest.raises(CancelledError, match=phase):
        _run(cancel)


def test_the_silhouette_engine_reports_decoding_only():
    calls = []
    meshes = SilhouetteLiftingPipeline()(image=[load_test_image(), load_test_image()], octree_resolution=32,
                                         callback=lambda *args: calls.append(args))
    assert calls == [("shape:decode", 1, 2), ("shape:decode", 2, 2)] and len(meshes) == 2
    with pytest.raises(CancelledError):
        SilhouetteLiftingPipeline()(image=load_test_image(), octree_resolution=32,
                                    callback=lambda *args: (_ for _ in ()).throw(CancelledError()))
