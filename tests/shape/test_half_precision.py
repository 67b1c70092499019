"""Half-precision paths (FACTS §10), run on the CPU: dtypes at every stage boundary and a mesh that
matches the float32 one statistically (the GPU kernels differ, so no bitwise comparison is meaningful)."""

from __future__ import annotations

import pytest
import torch
from mesh_metrics import assert_same_surface
from shape_testdata import MODEL_ROOT, OCTREE_RESOLUTION, load_test_image, tiny_pipeline

from hy3dshape import Hunyuan3DDiTFlowMatchingPipeline

RUN = {"num_inference_steps": 6, "guidance_scale": 5.0, "octree_resolution": OCTREE_RESOLUTION, "num_chunks": 5000}
CELL = 2 * 1.01 / OCTREE_RESOLUTION


def _run(pipe):
    return pipe(image=load_test_image(), generator=torch.Generator().manual_seed(42), **RUN)[0]


@pytest.mark.parametrize(("dtype", "bbox_cells", "relative"), [(torch.float16, 0.5, 0.01), (torch.bfloat16, 1.0, 0.05)])
def test_half_precision_mesh_matches_float32(dtype, bbox_cells, relative):
    pipe = Hunyuan3DDiTFlowMatchingPipeline.from_pretrained(MODEL_ROOT, device="cpu", dtype=dtype)
    seen: dict[str, torch.dtype] = {}
    hooks = [
        pipe.model.register_forward_hook(
            lambda m, args, out: seen.update(latents=args[0].dtype, t=args[1].dtype, context=args[2]["main"].dtype)),
        pipe.vae.geo_decoder.fourier_embedder.register_forward_hook(
            lambda m, args, out: seen.update(queries=args[0].dtype)),
        pipe.vae.geo_decoder.output_proj.register_forward_hook(lambda m, args, out: seen.update(logits=out.dtype)),
    ]
    original = pipe.vae.surface_extractor
    pipe.vae.surface_extractor = lambda grid, *a: (seen.update(grid=grid.dtype), original(grid, *a))[1]
    try:
        mesh = _run(pipe)
    finally:
        for hook in hooks:
            hook.remove()
    assert seen == {"latents": dtype, "t": dtype, "context": dtype, "queries": dtype, "logits": dtype,
                    "grid": torch.float32}
    assert_same_surface(mesh, _run(tiny_pipeline()), cell=CELL, bbox_cells=bbox_cells, relative=relative,
                        chamfer_cells=0.1 if dtype == torch.float16 else 0.5)
