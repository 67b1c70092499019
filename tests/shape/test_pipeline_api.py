"""The pipeline's call contract: defaults, batches, seeds, CFG switch, output types, argument errors."""

from __future__ import annotations

import inspect

import pytest
import torch
import trimesh
from shape_testdata import load_test_image, tiny_pipeline

from hy3dshape import Hunyuan3DDiTFlowMatchingPipeline

FAST = {"num_inference_steps": 3, "octree_resolution": 16, "num_chunks": 5000}


def test_defaults_are_upstreams():
    """Upstream's call defaults, except ``num_chunks``: None picks the chunk size by device (upstream: 8000)."""
    parameters = inspect.signature(Hunyuan3DDiTFlowMatchingPipeline.__call__).parameters
    defaults = {name: p.default for name, p in parameters.items() if p.default is not inspect.Parameter.empty}
    assert defaults == {"num_inference_steps": 50, "guidance_scale": 5.0, "generator": None, "box_v": 1.01,
                        "octree_resolution": 384, "mc_level": 0.0, "num_chunks": None, "output_type": "trimesh",
                        "enable_pbar": False, "callback": None}
    loader = inspect.signature(Hunyuan3DDiTFlowMatchingPipeline.from_pretrained).parameters
    assert loader["subfolder"].default == "hunyuan3d-dit-v2-1" and loader["variant"].default == "fp16"
    assert loader["use_safetensors"].default is False


def test_stages_are_attributes():
    pipe = tiny_pipeline()
    for name in ("conditioner", "model", "vae", "scheduler", "image_processor"):
        assert getattr(pipe, name) is not None
    assert callable(pipe.vae.volume_decoder) and callable(pipe.vae.surface_extractor)
    assert type(pipe.vae.volume_decoder).__name__ == "VanillaVolumeDecoder"  # the library default is dense


def test_a_list_of_images_gives_one_result_per_image_and_per_generator():
    pipe = tiny_pipeline()
    image = load_test_image()
    generators = [torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)]
    batch = pipe(image=[image, image], generator=generators, output_type="latent", **FAST)
    single = pipe(image=image, generator=torch.Generator().manual_seed(2), output_type="latent", **FAST)
    assert len(batch) == 2 and batch[0].shape == (pipe.vae.num_latents, pipe.vae.embed_dim)
    assert torch.allclose(batch[1], single[0], atol=1e-5)
    assert not torch.allclose(batch[0], batch[1])
    meshes = pipe(image=[image, image], generator=torch.Generator().manual_seed(3), **FAST)
    assert len(meshes) == 2 and all(isinstance(mesh, trimesh.Trimesh) for mesh in meshes)


def test_without_a_generator_the_global_cpu_seed_decides():
    pipe = tiny_pipeline()
    torch.manual_seed(7)
    first = pipe.prepare_latents(1, None)
    torch.manual_seed(7)
    second = pipe.prepare_latents(1, None)
    assert torch.equal(first, second)
    assert torch.equal(first, pipe.prepare_latents(1, torch.Generator().manual_seed(7)))


def test_one_generator_per_image_is_required_for_a_list():
    with pytest.raises(ValueError, match="got 1 generators for 2 images"):
        tiny_pipeline().prepare_latents(2, [torch.Generator()])


@pytest.mark.parametrize(("guidance_scale", "batch"), [(5.0, 2), (0.0, 2), (-1.0, 1)])
def test_cfg_runs_for_every_non_negative_guidance(guidance_scale, batch):
    pipe = tiny_pipeline()
    seen = []
    handle = pipe.model.register_forward_hook(lambda module, args, output: seen.append(args[0].shape[0]))
    try:
        pipe(image=load_test_image(), guidance_scale=guidance_scale, output_type="latent", **FAST)
    finally:
        handle.remove()
    assert seen == [batch] * (FAST["num_inference_steps"] - 1)


@pytest.mark.parametrize(("argument", "value", "message"), [
    ("output_type", "glb", "output_type must be one of"),
    ("octree_resolution", 2048, "octree_resolution must be an integer in"),
    ("octree_resolution", 64.0, "octree_resolution must be an integer in"),
    ("num_inference_steps", 0, "num_inference_steps must be a positive integer"),
    ("guidance_scale", float("nan"), "guidance_scale must be a finite number"),
    ("box_v", 0.0, "box_v must be a positive number"),
    ("num_chunks", 0, "num_chunks must be a positive integer"),
    ("mc_level", float("inf"), "mc_level must be a finite number"),
])
def test_bad_arguments_are_named(argument, value, message):
    kwargs = {**FAST, argument: value}
    with pytest.raises(ValueError, match=message):
        tiny_pipeline()(image=load_test_image(), **kwargs)


def test_unknown_arguments_are_not_silently_ignored():
    with pytest.raises(TypeError):
        tiny_pipeline()(image=load_test_image(), num_inference_step=3)


def test_an_empty_image_list_is_rejected():
    with pytest.raises(ValueError, match="got 0 images"):
        tiny_pipeline()(image=[], **FAST)


def test_extraction_failure_gives_none_instead_of_an_exception():
    (mesh,) = tiny_pipeline()(image=load_test_image(), mc_level=1000.0, **FAST)
    assert mesh is None


def test_compile_is_opt_in_and_compiles_the_dit_in_place(monkeypatch):
    from shape_testdata import MODEL_ROOT

    from hy3dshape.models.dit import HunYuanDiTPlain

    compiled = []
    monkeypatch.setattr(HunYuanDiTPlain, "compile", lambda self, **kwargs: compiled.append(kwargs))
    Hunyuan3DDiTFlowMatchingPipeline.from_pretrained(MODEL_ROOT, device="cpu", dtype=torch.float32)
    assert compiled == []
    pipe = Hunyuan3DDiTFlowMatchingPipeline.from_pretrained(MODEL_ROOT, device="cpu", dtype=torch.float32,
                                                            compile=True)
    assert compiled == [{"mode": "default", "dynamic": False}] and isinstance(pipe.model, HunYuanDiTPlain)
