"""DINOv2 image encoder of the texture stage: HF preprocessing and the giant-width tiny model (official layout)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hy3dcore.image_encoders import IMAGENET_MEAN, IMAGENET_STD
from hy3dcore.loading import WeightsError
from hy3dpaint.dino import CROP_SIZE, DinoImageEncoder, preprocess_for_dino

from .tiny_weights import build_tiny_paint_weights, single_threaded_torch  # noqa: F401

#: Tokens of DINOv2 at 224 px: CLS + 16 x 16 patches; width of giant.
DINO_TOKENS, DINO_WIDTH = 257, 1536


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_paint_weights(tmp_path_factory.mktemp("paint_weights"))


def test_uniform_image_becomes_imagenet_normalised_constants():
    pixel_values = preprocess_for_dino(Image.new("RGB", (512, 512), (255, 128, 0)))
    assert pixel_values.shape == (1, 3, CROP_SIZE, CROP_SIZE) and pixel_values.dtype == torch.float32
    for channel, value in enumerate((255, 128, 0)):
        expected = (value / 255 - IMAGENET_MEAN[channel]) / IMAGENET_STD[channel]
        np.testing.assert_allclose(pixel_values[0, channel].numpy(), expected, atol=1e-6)


def test_shortest_edge_goes_to_256_then_the_centre_224_is_cropped():
    columns = np.tile(np.arange(300, dtype=np.uint8)[None, :, None] % 251, (200, 1, 3))
    image = Image.fromarray(columns)
    resized = np.asarray(image.resize((384, 256), Image.Resampling.BICUBIC), dtype=np.float32) / 255
    expected = (resized[16:240, 80:304] - np.asarray(IMAGENET_MEAN)) / np.asarray(IMAGENET_STD)
    np.testing.assert_allclose(preprocess_for_dino(image)[0].permute(1, 2, 0).numpy(), expected, atol=1e-5)


def test_rgba_and_grey_images_are_encoded_as_rgb():
    assert preprocess_for_dino(Image.new("RGBA", (100, 80))).shape == (1, 3, CROP_SIZE, CROP_SIZE)
    assert preprocess_for_dino(Image.new("L", (80, 100))).shape == (1, 3, CROP_SIZE, CROP_SIZE)


def test_tiny_giant_width_encoder_gives_257_tokens_of_1536(weights):
    encoder = DinoImageEncoder.from_pretrained(weights / "dinov2-giant")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    first, second = encoder(image), encoder(image)
    assert first.shape == (1, DINO_TOKENS, DINO_WIDTH) and first.dtype == torch.float32
    assert torch.isfinite(first).all()
    torch.testing.assert_close(first, second, rtol=0, atol=0)


def test_the_encoder_is_transformers_dinov2_in_eval_mode_without_gradients(weights):
    from transformers import Dinov2Model

    encoder = DinoImageEncoder.from_pretrained(weights / "dinov2-giant")
    assert isinstance(encoder.model, Dinov2Model) and not encoder.model.training
    assert not any(parameter.requires_grad for parameter in encoder.model.parameters())
    assert encoder.model.encoder.layer[0].mlp.gate_proj.weight.shape == (1024, 1536)  # half of weights_in


def test_float16_is_the_default_on_cuda_only(weights):
    assert DinoImageEncoder.from_pretrained(weights / "dinov2-giant").dtype == torch.float32
    half = DinoImageEncoder.from_pretrained(weights / "dinov2-giant", dtype=torch.float16)
    assert half.dtype == torch.float16


def test_missing_dino_folder_names_the_missing_file(tmp_path):
    with pytest.raises(WeightsError, match=r"missing config\.json"):
        DinoImageEncoder.from_pretrained(tmp_path)
