"""The tiny shape checkpoint on CUDA in float16 and bfloat16.

Promises: the pipeline runs on CUDA in each half dtype (every stage boundary in that dtype, the grid in
float32); the seed's noise is drawn on the CPU, so the initial latents equal the CPU ones; the mesh matches
the float32 CPU mesh within the stated tolerances. Tolerances (grid cells of the R 48 test run): float16
bounding box within 1 cell, area and volume within 2 %, mean Chamfer distance under 0.25 cell; bfloat16
1.5 cells, 8 %, 0.75 cell (twice the CPU half-precision tolerances of tests/shape/test_half_precision.py:
CUDA kernels accumulate in a different order).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "shape"))

from mesh_metrics import assert_same_surface
from shape_testdata import MODEL_ROOT, OCTREE_RESOLUTION, load_test_image, tiny_pipeline

from hy3dshape import Hunyuan3DDiTFlowMatchingPipeline

RUN = {"num_inference_steps": 6, "guidance_scale": 5.0, "octree_resolution": OCTREE_RESOLUTION}
CELL = 2 * 1.01 / OCTREE_RESOLUTION
#: dtype -> (bbox cells, relative area/volume, Chamfer cells); see the module docstring.
TOLERANCES = {torch.float16: (1.0, 0.02, 0.25), torch.bfloat16: (1.5, 0.08, 0.75)}


def run(pipe):
    return pipe(image=load_test_image(), generator=torch.Generator().manual_seed(42), **RUN)[0]


@pytest.fixture(scope="module")
def cpu_mesh():
    return run(tiny_pipeline())


@pytest.mark.parametrize("dtype", list(TOLERANCES), ids=str)
def test_cuda_half_precision_mesh_matches_the_float32_cpu_mesh(dtype, cpu_mesh):
    pipe = Hunyuan3DDiTFlowMatchingPipeline.from_pretrained(MODEL_ROOT, device="cuda", dtype=dtype)
    seen: dict[str, object] = {}
    hook = pipe.model.register_forward_hook(
        lambda module, args, out: seen.update(latents=(args[0].dtype, args[0].device.type)))
    try:
        mesh = run(pipe)
    finally:
        hook.remove()
    assert seen["latents"] == (dtype, "cuda")
    bbox_cells, relative, chamfer_cells = TOLERANCES[dtype]
    assert_same_surface(mesh, cpu_mesh, cell=CELL, bbox_cells=bbox_cells, relative=relative,
                        chamfer_cells=chamfer_cells)


@pytest.mark.parametrize("dtype", list(TOLERANCES), ids=str)
def test_the_seed_draws_the_same_noise_on_cuda_as_on_the_cpu(dtype):
    pipe = Hunyuan3DDiTFlowMatchingPipeline.from_pretrained(MODEL_ROOT, device="cuda", dtype=dtype)
    on_cuda = pipe.prepare_latents(1, torch.Generator().manual_seed(1234))
    cpu = tiny_pipeline()
    on_cpu = cpu.prepare_latents(1, torch.Generator().manual_seed(1234))
    assert on_cuda.device.type == "cuda" and on_cuda.dtype == dtype
    # Drawn in the pipeline dtype on the CPU generator: the float32 CPU draw rounded to that dtype.
    drawn = torch.randn(on_cpu.shape, generator=torch.Generator().manual_seed(1234), dtype=dtype)
    assert torch.equal(on_cuda.cpu(), drawn)
