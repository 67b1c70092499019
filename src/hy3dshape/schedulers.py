"""Flow-matching Euler scheduler of Hunyuan3D-2.1 (FACTS §5).

Direction is reversed from diffusers' usual: sigma runs from 0 (pure noise) to 1 (clean data).
``set_timesteps(N)``: ``sigmas = linspace(0, 1, N)`` (float64 -> float32), ``timesteps = sigmas * 1000``,
and ``1.0`` is appended to the sigmas, so the last of the N steps has zero length (N model calls,
N - 1 effective Euler steps). ``step`` does ``x + (sigma[i+1] - sigma[i]) * v`` with the sum in float32 (the increment rounded
to the dtype of ``v``, as upstream) and casts back to the dtype of ``v``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

#: Largest accepted number of inference steps.
MAX_INFERENCE_STEPS = 1000


@dataclasses.dataclass
class FlowMatchEulerDiscreteSchedulerOutput:
    """Result of one scheduler step."""

    prev_sample: torch.Tensor


class FlowMatchEulerDiscreteScheduler:
    """Euler integrator of the flow ``dx/dsigma = v`` on the schedule above.

    Only the official configuration is implemented (``shift = 1``, no dynamic shifting).
    """

    def __init__(self, num_train_timesteps: int = 1000, shift: float = 1.0, use_dynamic_shifting: bool = False):
        if shift != 1.0 or use_dynamic_shifting:
            raise ValueError(
                f"FlowMatchEulerDiscreteScheduler: shift={shift}, use_dynamic_shifting={use_dynamic_shifting} "
                "is not supported; only shift=1.0 without dynamic shifting (the official configuration)"
            )
        if num_train_timesteps < 1:
            raise ValueError(f"num_train_timesteps must be positive, got {num_train_timesteps}")
        self.num_train_timesteps = int(num_train_timesteps)
        self.timesteps: torch.Tensor | None = None
        self.sigmas: torch.Tensor | None = None
        self._step_index = 0

    @property
    def step_index(self) -> int:
        """Index of the next step to take."""
        return self._step_index

    def set_timesteps(self, num_inference_steps: int, device: torch.device | str = "cpu") -> None:
        """Build the schedule of ``num_inference_steps`` steps and reset the step counter.

        Raises ``ValueError`` unless ``1 <= num_inference_steps <= MAX_INFERENCE_STEPS``.
        """
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, (int, np.integer)):
            raise ValueError(f"num_inference_steps must be an integer, got {num_inference_steps!r}")
        if not 1 <= num_inference_steps <= MAX_INFERENCE_STEPS:
            raise ValueError(f"num_inference_steps must be in [1, {MAX_INFERENCE_STEPS}], got {num_inference_steps}")
        sigmas = torch.from_numpy(np.linspace(0.0, 1.0, int(num_inference_steps)).astype(np.float32))
        self.timesteps = (sigmas * self.num_train_timesteps).to(device)
        self.sigmas = torch.cat([sigmas, torch.ones(1)]).to(device)
        self._step_index = 0

    def step_size(self, index: int | None = None) -> float:
        """``sigma[i + 1] - sigma[i]`` of step ``index`` (default: the next step); 0 for the last step."""
        if self.sigmas is None:
            raise RuntimeError("call set_timesteps before using the scheduler")
        i = self._step_index if index is None else index
        return float(self.sigmas[i + 1].item() - self.sigmas[i].item())

    def step(
        self, model_output: torch.Tensor, timestep: torch.Tensor | float | None, sample: torch.Tensor
    ) -> FlowMatchEulerDiscreteSchedulerOutput:
        """One Euler step with velocity ``model_output``; ``timestep`` is accepted for API familiarity only
        (the scheduler advances by its own step counter). Raises ``RuntimeError`` past the last step."""
        if self.sigmas is None:
            raise RuntimeError("call set_timesteps before using the scheduler")
        if self._step_index >= len(self.timesteps):
            raise RuntimeError(f"the schedule has {len(self.timesteps)} steps; all have been taken")
        i = self._step_index
        delta = (self.sigmas[i + 1] - self.sigmas[i]).to(device=sample.device)
        # As upstream: the increment is rounded to the velocity's dtype, the sum is taken in float32.
        increment = (delta * model_output.float()).to(model_output.dtype)
        prev_sample = (sample.float() + increment.float()).to(model_output.dtype)
        self._step_index += 1
        return FlowMatchEulerDiscreteSchedulerOutput(prev_sample=prev_sample)

    def skip_step(self, sample: torch.Tensor) -> FlowMatchEulerDiscreteSchedulerOutput:
        """Advance past a zero-length step without a model output (the result equals ``sample``).

        Raises ``ValueError`` if the next step does not have zero length.
        """
        if self.step_size() != 0.0:
            raise ValueError(f"step {self._step_index} has length {self.step_size()}; it cannot be skipped")
        self._step_index += 1
        return FlowMatchEulerDiscreteSchedulerOutput(prev_sample=sample)
