"""UniPC as upstream builds it from the folder's DDIM config (FACTS §7.6)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hy3dpaint.multiview import DEFAULT_NUM_INFERENCE_STEPS, unipc_scheduler_from_config

DATA = Path(__file__).resolve().parent.parent / "data" / "paint"
FOLDER_CONFIG = DATA / "model" / "hunyuan3d-paintpbr-tiny" / "scheduler" / "scheduler_config.json"
RECORDED = DATA / "diffusion"


def make_scheduler():
    return unipc_scheduler_from_config(json.loads(FOLDER_CONFIG.read_text(encoding="utf-8")))


def test_effective_config_equals_upstream_unipc_config():
    recorded = json.loads((RECORDED / "unipc_config.json").read_text(encoding="utf-8"))
    ours = dict(make_scheduler().config)
    for key, value in recorded.items():
        if not key.startswith("_"):
            assert ours[key] == value, key
    assert ours["timestep_spacing"] == "trailing" and ours["prediction_type"] == "v_prediction"


def test_trailing_timesteps_sigmas_and_zero_snr_alphas_match_upstream():
    recorded = np.load(RECORDED / "scheduler.npz")
    scheduler = make_scheduler()
    scheduler.set_timesteps(DEFAULT_NUM_INFERENCE_STEPS)
    np.testing.assert_array_equal(scheduler.timesteps.numpy(), recorded["timesteps_15"])
    np.testing.assert_array_equal(scheduler.timesteps.numpy(), recorded["timesteps_run"])
    np.testing.assert_allclose(scheduler.sigmas.numpy(), recorded["sigmas_run"], rtol=1e-6)
    np.testing.assert_allclose(scheduler.alphas_cumprod.numpy(), recorded["alphas_cumprod"], rtol=1e-6, atol=0)
    assert scheduler.alphas_cumprod[-1].item() == 2.0**-24  # zero terminal SNR, clamped
