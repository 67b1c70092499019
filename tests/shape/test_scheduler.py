"""``FlowMatchEulerDiscreteScheduler``: Euler arithmetic, the zero-length last step, argument errors."""

from __future__ import annotations

import pytest
import torch

from hy3dshape import FlowMatchEulerDiscreteScheduler


def test_step_is_an_euler_step_in_float32_cast_to_the_velocity_dtype():
    scheduler = FlowMatchEulerDiscreteScheduler()
    scheduler.set_timesteps(5)
    sample = torch.full((2, 3), 0.5, dtype=torch.float16)
    velocity = torch.full((2, 3), 2.0, dtype=torch.float16)
    result = scheduler.step(velocity, scheduler.timesteps[0], sample).prev_sample
    assert result.dtype == torch.float16
    assert torch.equal(result, torch.full((2, 3), 0.5 + 0.25 * 2.0, dtype=torch.float16))
    assert scheduler.step_index == 1


def test_last_step_can_be_skipped_and_others_cannot():
    scheduler = FlowMatchEulerDiscreteScheduler()
    scheduler.set_timesteps(3)
    sample = torch.ones(1)
    with pytest.raises(ValueError, match="cannot be skipped"):
        scheduler.skip_step(sample)
    scheduler.step(torch.zeros(1), None, sample)
    scheduler.step(torch.zeros(1), None, sample)
    assert scheduler.skip_step(sample).prev_sample is sample
    with pytest.raises(RuntimeError, match="all have been taken"):
        scheduler.step(torch.zeros(1), None, sample)


def test_a_single_step_schedule_is_one_zero_length_step():
    scheduler = FlowMatchEulerDiscreteScheduler()
    scheduler.set_timesteps(1)
    assert scheduler.timesteps.tolist() == [0.0] and scheduler.sigmas.tolist() == [0.0, 1.0]


@pytest.mark.parametrize("steps", [0, 1001, 2.5, True])
def test_out_of_range_step_counts_are_rejected(steps):
    with pytest.raises(ValueError, match="num_inference_steps"):
        FlowMatchEulerDiscreteScheduler().set_timesteps(steps)


def test_time_shift_is_not_silently_accepted():
    with pytest.raises(ValueError, match="shift=3.0"):
        FlowMatchEulerDiscreteScheduler(shift=3.0)


def test_using_the_scheduler_before_set_timesteps_is_an_error():
    with pytest.raises(RuntimeError, match="set_timesteps"):
        FlowMatchEulerDiscreteScheduler().step(torch.zeros(1), None, torch.zeros(1))
