"""The tiny texture checkpoints on CUDA in float16 and bfloat16.

Promises: the UNet 2.5D forward on CUDA matches the recorded upstream output within the stated tolerances
(max abs error, output scale ~1.9: float16 0.02, bfloat16 0.15; about 5x and 3x what the CPU half-precision
paths give, 0.004 and 0.047); the renders are identical on CPU and CUDA; the whole tiny pipeline runs on
CUDA in each half dtype and gives textures whose painted texels equal the CPU run's, with a mean colour
difference under 0.1 (the sampler amplifies rounding over its steps, so only a loose bound holds).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from paint.tiny_weights import build_tiny_paint_weights
from PIL import Image

from hy3dpaint import Hunyuan3DPaintConfig, Hunyuan3DPaintPipeline, UNet2p5DConditionModel
from hy3dpaint.render.mesh_renderer import MeshRenderer

DATA = Path(__file__).resolve().parents[1] / "data" / "paint"
UNET_FOLDER = DATA / "model" / "hunyuan3d-paintpbr-tiny" / "unet"
DIFFUSION = DATA / "diffusion"
MESH = DATA / "mesh" / "mesh.glb"
#: dtype -> max abs error of the UNet output (see the module docstring).
UNET_ATOL = {torch.float16: 0.02, torch.bfloat16: 0.15}
#: Largest mean absolute difference of the baked albedo (values in [0, 1]) from the CPU float32 run.
TEXTURE_MEAN_ATOL = 0.1
SMALL = dict(resolution=64, render_size=128, texture_size=128)
SEED = 3


def tensor(array: np.ndarray, dtype: torch.dtype | None = None) -> torch.Tensor:
    value = torch.from_numpy(np.array(array, copy=True)).to("cuda")
    return value if dtype is None else value.to(dtype)


@pytest.mark.parametrize("dtype", list(UNET_ATOL), ids=str)
def test_unet_forward_on_cuda_matches_upstream_within_tolerance(dtype):
    single = dict(np.load(DIFFUSION / "forward_single.npz"))
    dino = np.load(DIFFUSION / "dino_hidden_states.npz")["dino_hidden_states"]
    unet = UNet2p5DConditionModel.from_pretrained(UNET_FOLDER, device="cuda", dtype=dtype)
    with torch.no_grad():
        output = unet(tensor(single["sample"], dtype), tensor(single["timestep"]),
                      tensor(single["encoder_hidden_states"], dtype),
                      embeds_normal=tensor(single["embeds_normal"], dtype),
                      embeds_position=tensor(single["embeds_position"], dtype),
                      ref_latents=tensor(single["ref_latents"], dtype), dino_hidden_states=tensor(dino, dtype),
                      position_maps=tensor(single["position_maps_in"]), cache={}).sample
    assert output.dtype == dtype and output.device.type == "cuda"
    error = np.abs(output.float().cpu().numpy() - single["output"]).max()
    assert error <= UNET_ATOL[dtype], error


def test_renders_are_identical_on_cpu_and_cuda():
    mesh = trimesh.load(MESH, force="mesh")
    renders = {}
    for device in ("cpu", "cuda"):
        renderer = MeshRenderer.from_trimesh(mesh, texture_size=128, render_size=128, device=device)
        renders[device] = [renderer.render_normal(20, 45).cpu(), renderer.render_position(-10, 200).cpu()]
    for cpu, cuda in zip(renders["cpu"], renders["cuda"]):
        assert torch.equal(cpu, cuda)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return build_tiny_paint_weights(tmp_path_factory.mktemp("paint_weights"))


@pytest.fixture(scope="module")
def image() -> Image.Image:
    return Image.fromarray(np.load(DIFFUSION / "sampling.npz")["reference_rgba_uint8"])


def albedo_of(pipe: Hunyuan3DPaintPipeline, image: Image.Image) -> np.ndarray:
    painted = pipe(MESH, image, seed=SEED)
    return np.asarray(painted.visual.material.baseColorTexture.convert("RGB"), dtype=np.float32) / 255


@pytest.fixture(scope="module")
def cpu_albedo(weights, image) -> np.ndarray:
    return albedo_of(Hunyuan3DPaintPipeline(Hunyuan3DPaintConfig.from_weights_dir(weights, device="cpu", **SMALL)),
                     image)


@pytest.mark.parametrize("dtype", list(UNET_ATOL), ids=str)
def test_whole_tiny_pipeline_on_cuda_paints_like_the_cpu(dtype, weights, image, cpu_albedo):
    config = Hunyuan3DPaintConfig.from_weights_dir(weights, device="cuda", dtype=dtype, **SMALL)
    albedo = albedo_of(Hunyuan3DPaintPipeline(config), image)
    assert albedo.shape == cpu_albedo.shape and np.isfinite(albedo).all()
    assert np.abs(albedo - cpu_albedo).mean() < TEXTURE_MEAN_ATOL
