"""Multiview PBR diffusion (FACTS §6-7): folder loading, conditioning encodes, triple-batch CFG
UniPC sampling, decode, and seeds; parity with ``diffusion/sampling.npz`` on CPU in float32."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hy3dcore.loading import WeightsError
from hy3dpaint.multiview import MultiviewConditions, MultiviewPBRDiffusionPipeline, prepare_style_image

from .tiny_weights import single_threaded_torch  # noqa: F401  (autouse fixture)

DATA = Path(__file__).resolve().parent.parent / "data" / "paint"
MODEL = DATA / "model" / "hunyuan3d-paintpbr-tiny"
DIFFUSION = DATA / "diffusion"
VIEW_SIZE = 64
#: README tolerances.
VAE_STATS_ATOL = 1e-4
LATENT_ATOL = 1e-4
STEP_ATOL = 1e-3
DECODED_ATOL = 2e-3
DECODED_UINT8_EQUAL_FRACTION = 0.999


@pytest.fixture(scope="module")
def pipe() -> MultiviewPBRDiffusionPipeline:
    return MultiviewPBRDiffusionPipeline.from_pretrained(MODEL)


@pytest.fixture(scope="module")
def recorded() -> dict[str, np.ndarray]:
    return dict(np.load(DIFFUSION / "sampling.npz"))


@pytest.fixture(scope="module")
def dino() -> torch.Tensor:
    return torch.from_numpy(np.load(DIFFUSION / "dino_hidden_states.npz")["dino_hidden_states"]).float()


@pytest.fixture(scope="module")
def inputs(recorded) -> tuple[Image.Image, list[Image.Image], list[Image.Image]]:
    style = prepare_style_image(Image.fromarray(recorded["reference_rgba_uint8"]), VIEW_SIZE)
    normals = [Image.fromarray(image) for image in recorded["normal_uint8"]]
    positions = [Image.fromarray(image) for image in recorded["position_uint8"]]
    return style, normals, positions


def test_folder_loads_in_fp32_on_cpu_with_the_default_vae_scaling_factor(pipe):
    assert pipe.dtype == torch.float32 and pipe.device.type == "cpu"
    assert pipe.vae.config.scaling_factor == pytest.approx(0.18215)
    assert pipe.make_scheduler().config.timestep_spacing == "trailing"


def test_style_step_reproduces_upstream_style_image(recorded, inputs):
    np.testing.assert_array_equal(np.asarray(inputs[0]), recorded["style_image_uint8"])


def test_vae_posterior_statistics_of_the_conditions_match_upstream(pipe, recorded, inputs):
    style, normals, positions = inputs
    reference = torch.from_numpy(np.asarray(style, dtype=np.float64) / 255).permute(2, 0, 1)[None, None].float()
    np.testing.assert_allclose(reference.numpy(), recorded["ref_images"], atol=1e-7)
    for name, images in (("ref", reference[0]), ("normal", fp16_maps(recorded["normal_uint8"])),
                         ("position", fp16_maps(recorded["position_uint8"]))):
        with torch.no_grad():
            posterior = pipe.vae.encode(((images - 0.5) * 2.0).float()).latent_dist
        np.testing.assert_allclose(posterior.mean.numpy(), recorded[f"{name}_mean"], atol=VAE_STATS_ATOL)
        np.testing.assert_allclose(posterior.std.numpy(), recorded[f"{name}_std"], atol=VAE_STATS_ATOL)


def test_seed_zero_draws_upstream_posterior_samples_and_initial_noise(pipe, recorded, inputs):
    conditions = pipe.encode_conditions(*inputs, torch.Generator("cpu").manual_seed(0))
    for name in ("ref", "normal", "position"):
        np.testing.assert_allclose(getattr(conditions, f"{name}_latents").numpy(), recorded[f"{name}_latents"],
                                   atol=LATENT_ATOL)
    noise = pipe.initial_noise(7, VIEW_SIZE, torch.Generator("cpu").manual_seed(0))
    np.testing.assert_array_equal(noise.numpy(), recorded["init_noise"])


def fp16_maps(maps_uint8: np.ndarray) -> torch.Tensor:
    """[N, H, W, 3] uint8 -> [N, 3, H, W] fp16(float32(u8) / 255), as upstream's pipeline."""
    return (torch.from_numpy(maps_uint8).float() / 255).half().permute(0, 3, 1, 2).contiguous()


def recorded_conditions(recorded) -> MultiviewConditions:
    positions = fp16_maps(recorded["position_uint8"]).unsqueeze(0)
    return MultiviewConditions(ref_latents=torch.from_numpy(recorded["ref_latents"]),
                               normal_latents=torch.from_numpy(recorded["normal_latents"]),
                               position_latents=torch.from_numpy(recorded["position_latents"]),
                               position_maps=positions)


def test_sampling_loop_fed_recorded_tensors_matches_every_step_and_the_decode(pipe, recorded, dino):
    guided, latents_per_step = [], []

    def record(step, timestep, guided_noise, latents):
        assert int(timestep) == int(recorded["timesteps"][step])
        guided.append(guided_noise.numpy().copy())
        latents_per_step.append(latents.numpy().copy())

    latents = pipe.denoise(recorded_conditions(recorded), dino, torch.from_numpy(recorded["init_noise"]),
                           step_callback=record)
    np.testing.assert_allclose(np.stack(guided), recorded["guided_noise_pred"], atol=STEP_ATOL)
    np.testing.assert_allclose(np.stack(latents_per_step), recorded["latents_after_step"], atol=STEP_ATOL)
    decoded = pipe.decode(latents).numpy()
    np.testing.assert_allclose(decoded, recorded["decoded_float16"].astype(np.float32), atol=DECODED_ATOL)
    as_uint8 = (decoded * 255).round().astype(np.uint8)
    close = np.abs(as_uint8.astype(int) - recorded["decoded_uint8"]) <= 1
    assert close.mean() >= DECODED_UINT8_EQUAL_FRACTION


def test_seed_zero_reproduces_upstream_views_end_to_end(pipe, recorded, inputs, dino):
    output = pipe(*inputs, dino, seed=0)
    assert len(output.albedo) == len(output.mr) == 7
    views = np.stack([np.asarray(image) for image in output.albedo + output.mr])
    close = np.abs(views.astype(int) - recorded["decoded_uint8"]) <= 1
    assert close.mean() >= DECODED_UINT8_EQUAL_FRACTION


def test_same_seed_gives_the_same_views_and_another_seed_different_ones(pipe, inputs, dino):
    def run(seed):
        return pipe(*inputs, dino, seed=seed, num_inference_steps=2, output_type="np")

    first, again, other = run(5), run(5), run(6)
    np.testing.assert_array_equal(first.albedo, again.albedo)
    np.testing.assert_array_equal(first.mr, again.mr)
    assert np.abs(first.albedo - other.albedo).mean() > 1e-3
    assert np.abs(first.mr - other.mr).mean() > 1e-3


def test_fast_guidance_drops_only_a_branch_that_cancels(pipe, recorded, dino):
    conditions = recorded_conditions(recorded)
    noise = torch.from_numpy(recorded["init_noise"])
    triple = pipe.denoise(conditions, dino, noise, num_inference_steps=3)
    double = pipe.denoise(conditions, dino, noise, num_inference_steps=3, fast_guidance=True)
    np.testing.assert_allclose(double.numpy(), triple.numpy(), atol=1e-4)


def test_inputs_of_different_sizes_or_counts_are_rejected(pipe, inputs, dino):
    style, normals, positions = inputs
    with pytest.raises(ValueError, match="same number"):
        pipe(style, normals, positions[:-1], dino)
    with pytest.raises(ValueError, match=r"position map 2 is 32x32; all images must be 64x64"):
        pipe(style, normals, positions[:2] + [positions[2].resize((32, 32))] + positions[3:], dino)
    with pytest.raises(ValueError, match="output_type"):
        pipe(style, normals, positions, dino, output_type="jpeg")


@pytest.fixture()
def model_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "hunyuan3d-paintpbr-v2-1"
    shutil.copytree(MODEL, folder)
    return folder


def test_missing_folder_component_or_file_is_named(tmp_path, model_copy):
    with pytest.raises(WeightsError, match="multiview model folder not found"):
        MultiviewPBRDiffusionPipeline.from_pretrained(tmp_path / "absent")
    index = json.loads((model_copy / "model_index.json").read_text(encoding="utf-8"))
    del index["vae"]
    (model_copy / "model_index.json").write_text(json.dumps(index), encoding="utf-8")
    with pytest.raises(WeightsError, match=r"model_index\.json: missing component 'vae'"):
        MultiviewPBRDiffusionPipeline.from_pretrained(model_copy)
    shutil.copyfile(MODEL / "model_index.json", model_copy / "model_index.json")
    (model_copy / "vae" / "diffusion_pytorch_model.bin").unlink()
    with pytest.raises(WeightsError, match=r"vae: no weights file"):
        MultiviewPBRDiffusionPipeline.from_pretrained(model_copy)


def test_vae_weights_with_a_wrong_shape_are_named(model_copy):
    path = model_copy / "vae" / "diffusion_pytorch_model.bin"
    state_dict = torch.load(path, weights_only=True)
    state_dict["decoder.mid_block.attentions.0.query.weight"] = torch.zeros(3, 3)
    torch.save(state_dict, path)
    with pytest.raises(WeightsError, match=r"first 'decoder\.mid_block\.attentions\.0\.to_q\.weight': "
                                           r"file has \[3, 3\]"):
        MultiviewPBRDiffusionPipeline.from_pretrained(model_copy)
