"""``Hunyuan3DPaintPipeline`` end to end on tiny weights (CPU), and its configuration."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from hy3dcore.loading import WeightsError
from hy3dpaint import Hunyuan3DPaintConfig, Hunyuan3DPaintPipeline
from hy3dpaint.pipeline import ConditionRenders

from .tiny_weights import build_tiny_paint_weights, single_threaded_torch  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "paint"
MESH = DATA / "mesh" / "mesh.glb"
#: Small sizes so that the tiny pipeline runs in seconds on a CPU.
SMALL = dict(device="cpu", resolution=64, render_size=128, texture_size=128)
SEED = 3


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_paint_weights(tmp_path_factory.mktemp("paint_weights"))


@pytest.fixture(scope="module")
def pipe(weights) -> Hunyuan3DPaintPipeline:
    return Hunyuan3DPaintPipeline(Hunyuan3DPaintConfig.from_weights_dir(weights, **SMALL))


@pytest.fixture(scope="module")
def image() -> Image.Image:
    return Image.fromarray(np.load(DATA / "diffusion" / "sampling.npz")["reference_rgba_uint8"])


@pytest.fixture(scope="module")
def progress_events() -> list[tuple[str, int, int]]:
    return []


@pytest.fixture(scope="module")
def painted(pipe, image, progress_events) -> trimesh.Trimesh:
    return pipe(MESH, image, seed=SEED, callback=lambda *event: progress_events.append(event))


def test_config_defaults_are_upstream_and_paths_follow_the_official_layout(tmp_path):
    config = Hunyuan3DPaintConfig.from_weights_dir(tmp_path)
    assert (config.max_num_view, config.resolution, config.render_size, config.texture_size) == (6, 512, 2048, 4096)
    assert (config.num_inference_steps, config.guidance_scale) == (15, 3.0)
    assert config.multiview_model_path == tmp_path / "hunyuan3d-paintpbr-v2-1"
    assert config.dino_model_path == tmp_path / "dinov2-giant"
    assert config.realesrgan_ckpt_path == tmp_path / "RealESRGAN_x4plus.pth"
    assert Hunyuan3DPaintConfig.from_weights_dir(tmp_path, device="cpu").torch_dtype == torch.float32
    assert Hunyuan3DPaintConfig.from_weights_dir(tmp_path, device="cuda").torch_dtype == torch.float16


@pytest.mark.parametrize(("field", "value", "message"), [
    ("resolution", 500, "resolution must be a positive multiple of 8"),
    ("max_num_view", 13, r"max_num_view must be an integer in \[1, 12\]"),
    ("texture_size", 16, r"texture_size must be an integer in \[64, 8192\]"),
    ("guidance_scale", float("nan"), "guidance_scale must be a finite number"),
    ("mr_layout", "rgb", "mr_layout must be one of reference, gltf"),
    ("uv_method", "magic", "uv_method must be one of charts, xatlas"),
    ("inpaint_mode", "slow", "inpaint_mode must be one of"),
])
def test_config_rejects_values_outside_what_is_allowed(tmp_path, field, value, message):
    with pytest.raises(ValueError, match=message):
        Hunyuan3DPaintConfig.from_weights_dir(tmp_path, **{field: value})


def test_unknown_config_field_is_named(tmp_path):
    with pytest.raises(TypeError, match=r"unknown Hunyuan3DPaintConfig field\(s\) \['steps'\]"):
        Hunyuan3DPaintConfig.from_weights_dir(tmp_path, steps=10)


def test_missing_weights_fail_at_construction_naming_the_file(tmp_path):
    with pytest.raises(WeightsError, match="hunyuan3d-paintpbr-v2-1: multiview model folder not found"):
        Hunyuan3DPaintPipeline(Hunyuan3DPaintConfig.from_weights_dir(tmp_path, **SMALL))


def test_bad_call_arguments_are_rejected_before_any_work(pipe, image):
    with pytest.raises(ValueError, match="output_type must be 'trimesh' or 'glb'"):
        pipe(MESH, image, output_type="obj")
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        pipe(MESH, image, seed=-1)
    with pytest.raises(TypeError, match="image must be a PIL image"):
        pipe(MESH, np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(FileNotFoundError, match="mesh file not found"):
        pipe(DATA / "absent.glb", image)


def test_pipeline_paints_the_mesh_end_to_end_on_tiny_weights(painted):
    source = trimesh.load(MESH, force="mesh")
    assert isinstance(painted, trimesh.Trimesh)
    np.testing.assert_allclose(painted.bounds, source.bounds, atol=1e-5)  # input frame kept
    uv = np.asarray(painted.visual.uv)
    assert uv.shape == (len(painted.vertices), 2) and uv.min() >= 0 and uv.max() <= 1
    material = painted.visual.material
    assert isinstance(material, trimesh.visual.material.PBRMaterial)
    half_texture = SMALL["texture_size"] // 2
    base_color = np.asarray(material.baseColorTexture)
    metallic_roughness = np.asarray(material.metallicRoughnessTexture)
    assert base_color.shape == metallic_roughness.shape == (half_texture, half_texture, 3)
    assert (metallic_roughness[..., 0] == 255).all()  # glTF layout: R unused, G roughness, B metallic
    # (The tiny RRDBNet's random weights upscale everything to almost black, so the textures are
    # dark here; the generated views themselves are checked in the next test.)


def test_progress_reports_every_phase_in_order_and_one_diffusion_step_per_denoising_step(pipe, painted,
                                                                                        progress_events):
    phases = list(dict.fromkeys(phase for phase, _done, _total in progress_events))
    assert phases == ["paint:uv", "paint:render", "paint:diffusion", "paint:upscale", "paint:bake"]
    steps = pipe.config.num_inference_steps
    diffusion = [(done, total) for phase, done, total in progress_events if phase == "paint:diffusion"]
    assert diffusion == [(step, steps) for step in range(1, steps + 1)]
    views = [total for phase, _done, total in progress_events if phase == "paint:render"]
    assert views and views == [views[0]] * views[0] and views[0] >= 6
    upscale = [(done, total) for phase, done, total in progress_events if phase == "paint:upscale"]
    assert upscale == [(index, views[0]) for index in range(1, views[0] + 1)]
    for phase in phases:  # every phase ends with done == total, and done never goes back
        events = [(done, total) for name, done, total in progress_events if name == phase]
        assert events[-1][0] == events[-1][1]
        assert [done for done, _total in events] == sorted(done for done, _total in events)


def test_an_exception_raised_by_the_callback_stops_the_pipeline_and_propagates(pipe, image):
    class CancelledError(Exception):
        pass

    seen: list[str] = []

    def cancel_at_the_second_step(phase: str, done: int, total: int) -> None:
        seen.append(phase)
        if phase == "paint:diffusion" and done == 2:
            raise CancelledError

    with pytest.raises(CancelledError):
        pipe(MESH, image, seed=SEED, callback=cancel_at_the_second_step)
    assert seen.count("paint:diffusion") == 2 and "paint:upscale" not in seen


def test_generated_views_follow_the_seed(pipe, image):
    sampling = np.load(DATA / "diffusion" / "sampling.npz")
    conditions = ConditionRenders(views=[None] * 7,
                                  normal_maps=[Image.fromarray(view) for view in sampling["normal_uint8"]],
                                  position_maps=[Image.fromarray(view) for view in sampling["position_uint8"]])
    first, again, other = (pipe.generate_views(image, conditions, seed) for seed in (1, 1, 2))
    assert len(first.albedo) == len(first.mr) == 7
    stack = [np.stack([np.asarray(view) for view in run.albedo + run.mr]) for run in (first, again, other)]
    assert stack[0].shape == (14, 64, 64, 3) and stack[0].std() > 1.0
    np.testing.assert_array_equal(stack[0], stack[1])
    assert np.abs(stack[0].astype(int) - stack[2]).mean() > 1.0
    upscaled = pipe.upscale_views(first)
    assert {view.size for view in upscaled.albedo + upscaled.mr} == {(SMALL["render_size"],) * 2}


@pytest.mark.slow
def test_glb_output_is_valid_gltf_and_same_seed_gives_the_same_textures(pipe, image, painted, tmp_path):
    glb = pipe(trimesh.load(MESH), image, seed=SEED, output_type="glb", texture_format="png")
    assert isinstance(glb, bytes) and glb[:4] == b"glTF"
    path = tmp_path / "painted.glb"
    path.write_bytes(glb)
    report = subprocess.run(["node", str(REPO / "scripts" / "validate-gltf.js"), str(path)],
                            capture_output=True, text=True, check=False)
    assert report.returncode == 0, report.stdout + report.stderr
    assert json.loads(report.stdout)["numErrors"] == 0
    loaded = trimesh.load(io.BytesIO(glb), file_type="glb", force="mesh")
    material = loaded.visual.material
    np.testing.assert_array_equal(np.asarray(material.baseColorTexture.convert("RGB")),
                                  np.asarray(painted.visual.material.baseColorTexture))
    np.testing.assert_array_equal(np.asarray(material.metallicRoughnessTexture.convert("RGB")),
                                  np.asarray(painted.visual.material.metallicRoughnessTexture))


def test_a_96_px_view_size_runs_end_to_end_with_a_latent_of_12(weights, image):
    """96 px is a multiple of 8 whose latent (12) is not: the RoPE grids are 12, 6, 3 and 1."""
    pipe96 = Hunyuan3DPaintPipeline(Hunyuan3DPaintConfig.from_weights_dir(weights, **{**SMALL, "resolution": 96}))
    events: list[tuple[str, int, int]] = []
    painted96 = pipe96(MESH, image, seed=SEED, callback=lambda *event: events.append(event))
    assert isinstance(painted96.visual.material, trimesh.visual.material.PBRMaterial)
    assert ("paint:diffusion", pipe96.config.num_inference_steps, pipe96.config.num_inference_steps) in events
