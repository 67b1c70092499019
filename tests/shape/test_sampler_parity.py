"""Vector c: schedule, seeds, per-step DiT inputs and outputs, CFG, Euler steps, final latents."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from shape_testdata import (
    GUIDANCE_SCALE,
    NUM_CHUNKS,
    OCTREE_RESOLUTION,
    SEED,
    STEPS,
    load_test_image,
    max_abs,
    tiny_pipeline,
    vector,
)

from hy3dshape import FlowMatchEulerDiscreteScheduler, Hunyuan3DDiTFlowMatchingPipeline

LATENT_TOLERANCE = 2e-4


def test_schedule_matches_for_the_run_and_the_default_50_steps():
    c = vector("c_sampler")
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000)
    for steps, timesteps, sigmas in ((STEPS, c["scheduler_timesteps"], c["scheduler_sigmas"]),
                                     (50, c["default50_timesteps"], c["default50_sigmas"])):
        scheduler.set_timesteps(steps)
        assert scheduler.timesteps.dtype == torch.float32
        assert max_abs(scheduler.timesteps, timesteps) <= 1e-7 * 1000
        assert max_abs(scheduler.sigmas, sigmas) <= 1e-7
        assert scheduler.step_size(steps - 1) == 0.0, "the last step has zero length"


class _VelocityRecorder(torch.nn.Module):
    """Stands in for the DiT: records the timesteps it receives and predicts zero velocity."""

    def __init__(self):
        super().__init__()
        self.timesteps: list[torch.Tensor] = []

    def forward(self, x, t, contexts):
        self.timesteps.append(t.clone())
        return torch.zeros_like(x)


@pytest.mark.parametrize(("dtype", "key"), [(torch.float32, "default50_model_timestep_fp32"),
                                            (torch.float16, "default50_model_timestep_fp16")])
def test_model_timestep_is_cast_to_the_latent_dtype_before_division(dtype, key):
    tiny = tiny_pipeline()
    recorder = _VelocityRecorder()
    pipe = Hunyuan3DDiTFlowMatchingPipeline(tiny.vae, recorder, FlowMatchEulerDiscreteScheduler(),
                                            tiny.conditioner, tiny.image_processor, device="cpu", dtype=dtype)
    latents = torch.zeros(1, 4, 16, dtype=dtype)
    pipe.denoise(latents, torch.zeros(2, 17, 32, dtype=dtype), num_inference_steps=50, guidance_scale=5.0)
    seen = torch.stack([t[0] for t in recorder.timesteps]).float().numpy()
    assert len(recorder.timesteps) == 49, "the zero-length last step is not evaluated"
    assert all(t.dtype == dtype and t.shape == (2,) for t in recorder.timesteps)
    assert np.array_equal(seen, vector("c_sampler")[key][:49])


@pytest.fixture(scope="module")
def run():
    """The c run of the vectors, with the DiT calls and scheduler steps recorded."""
    pipe = tiny_pipeline()
    calls: list[tuple] = []
    steps: list[tuple] = []
    handle = pipe.model.register_forward_hook(
        lambda module, args, output: calls.append((args[0].clone(), args[1].clone(), args[2]["main"].clone(),
                                                   output.clone())))
    original_step = pipe.scheduler.step

    def recording_step(model_output, timestep, sample):
        result = original_step(model_output, timestep, sample)
        steps.append((model_output.clone(), sample.clone(), result.prev_sample.clone()))
        return result

    pipe.scheduler.step = recording_step
    try:
        latents = pipe(image=load_test_image(), num_inference_steps=STEPS, guidance_scale=GUIDANCE_SCALE,
                       generator=torch.Generator().manual_seed(SEED), octree_resolution=OCTREE_RESOLUTION,
                       num_chunks=NUM_CHUNKS, output_type="latent")
    finally:
        handle.remove()
        del pipe.scheduler.step
    return {"latents": latents, "calls": calls, "steps": steps}


def test_preprocessed_image_matches():
    c = vector("c_sampler")
    out = tiny_pipeline().image_processor(load_test_image())
    assert max_abs(out["image"], c["image"]) == 0.0
    assert max_abs(out["mask"], c["mask"]) == 0.0


def test_initial_noise_is_the_cpu_generator_draw():
    noise = tiny_pipeline().prepare_latents(1, torch.Generator().manual_seed(SEED))
    assert max_abs(noise, vector("c_sampler")["init_noise"]) == 0.0


def test_the_zero_length_last_step_is_skipped(run):
    assert len(run["calls"]) == STEPS - 1
    assert len(run["steps"]) == STEPS - 1


def test_dit_inputs_match_at_every_step(run):
    c = vector("c_sampler")
    for index, (x, t, context, _output) in enumerate(run["calls"]):
        assert max_abs(x, c["model_input"][index]) <= LATENT_TOLERANCE, f"step {index}"
        assert max_abs(t, c["model_timestep"][index]) <= 1e-7, f"step {index}"
        assert max_abs(context, c["cond_batch"]) <= 1e-4, f"step {index}"


def test_cfg_halves_and_guided_velocity_match(run):
    c = vector("c_sampler")
    for index, ((*_, output), (guided, _sample, _next)) in enumerate(zip(run["calls"], run["steps"])):
        v_cond, v_uncond = output.chunk(2)
        assert max_abs(v_cond, c["v_cond"][index]) <= LATENT_TOLERANCE, f"step {index}"
        assert max_abs(v_uncond, c["v_uncond"][index]) <= LATENT_TOLERANCE, f"step {index}"
        assert max_abs(guided, c["v_guided"][index]) <= LATENT_TOLERANCE, f"step {index}"


def test_latents_match_after_every_step(run):
    c = vector("c_sampler")
    assert max_abs(run["steps"][0][1], c["latents"][0]) == 0.0
    for index, (_v, _sample, next_latents) in enumerate(run["steps"]):
        assert max_abs(next_latents, c["latents"][index + 1]) <= LATENT_TOLERANCE, f"step {index}"
    assert np.array_equal(c["latents"][-1], c["latents"][-2]), "upstream's last step leaves the latents unchanged"


def test_final_latents_match(run):
    assert len(run["latents"]) == 1
    assert max_abs(run["latents"][0], vector("c_sampler")["final_latents"][0]) <= LATENT_TOLERANCE
