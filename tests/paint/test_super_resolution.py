"""Real-ESRGAN x4 (FACTS §8): RealESRGANer's quirks and the RRDBNet keys."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hy3dcore.loading import WeightsError
from hy3dpaint.models.rrdbnet import RRDBNet
from hy3dpaint.super_resolution import RealESRGANUpscaler

DATA = Path(__file__).resolve().parent.parent / "data"
SR = DATA / "paint" / "sr"


@pytest.fixture(scope="module")
def upscaler() -> RealESRGANUpscaler:
    return RealESRGANUpscaler.from_checkpoint(SR / "rrdbnet_tiny.pth")


@pytest.fixture(scope="module")
def recorded() -> dict[str, np.ndarray]:
    return dict(np.load(SR / "sr.npz"))


def test_architecture_is_read_from_the_checkpoint(upscaler):
    config = json.loads((SR / "config.json").read_text(encoding="utf-8"))["rrdbnet"]
    assert upscaler.net.conv_first.out_channels == config["num_feat"]
    assert len(upscaler.net.body) == config["num_block"]
    assert upscaler.net.body[0].rdb1.conv1.out_channels == config["num_grow_ch"]


def test_network_receives_the_rgb_image_with_channels_reversed(upscaler, recorded):
    net_input = upscaler.network_input(Image.fromarray(recorded["input_uint8"]))
    np.testing.assert_array_equal(net_input.numpy(), recorded["net_input_bgr"])


def test_raw_network_output_matches_upstream(upscaler, recorded):
    with torch.no_grad():
        output = upscaler.net(torch.from_numpy(recorded["net_input_bgr"]))
    np.testing.assert_allclose(output.numpy(), recorded["net_output_raw"], atol=1e-5)


def test_upscaled_image_matches_upstream_within_one_level(upscaler, recorded):
    output = np.asarray(upscaler(Image.fromarray(recorded["input_uint8"])))
    assert output.shape == recorded["output_uint8"].shape == (128, 96, 3)
    assert np.abs(output.astype(int) - recorded["output_uint8"]).max() <= 1


def test_full_size_rrdbnet_keys_equal_the_realesrgan_x4plus_manifest():
    with torch.device("meta"):
        net = RRDBNet()
    manifest = [line.split("\t") for line in
                (DATA / "keys" / "paint" / "realesrgan_x4plus_rrdbnet.tsv").read_text(encoding="utf-8").splitlines()]
    assert [(key, list(value.shape)) for key, value in net.state_dict().items()] == \
        [(key, json.loads(shape)) for key, shape in manifest]
    assert sum(value.numel() for value in net.state_dict().values()) == 16_697_987


def test_checkpoint_without_params_ema_is_rejected_with_the_keys_found(tmp_path):
    state = torch.load(SR / "rrdbnet_tiny.pth", weights_only=True)
    torch.save({"params": state["params_ema"]}, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match=r"bad\.pth: expected the state dict under key 'params_ema'; found params"):
        RealESRGANUpscaler.from_checkpoint(tmp_path / "bad.pth")


def test_checkpoint_with_a_missing_tensor_names_it(tmp_path):
    state = torch.load(SR / "rrdbnet_tiny.pth", weights_only=True)
    del state["params_ema"]["conv_hr.bias"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(WeightsError, match=r"partial\.pth.*missing key\(s\), first 'conv_hr\.bias'"):
        RealESRGANUpscaler.from_checkpoint(tmp_path / "partial.pth")


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(WeightsError, match=r"RealESRGAN_x4plus\.pth: file not found"):
        RealESRGANUpscaler.from_checkpoint(tmp_path / "RealESRGAN_x4plus.pth")
