"""Vector f: full-size image preprocessing (512 px, border 0.15) reproduces upstream's pixels exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from shape_testdata import load_test_image, max_abs, tensor, vector

from hy3dshape.models.conditioner import DinoImageEncoder
from hy3dshape.official_config import DINOV2_LARGE_CONFIG
from hy3dshape.preprocessors import ImageProcessorV2, recenter


def test_test_image_decodes_to_the_recorded_rgba():
    assert np.array_equal(np.asarray(load_test_image()), vector("f_preprocess_full")["rgba"])


def test_recenter_is_exact():
    f = vector("f_preprocess_full")
    rgb, mask = recenter(f["rgba"], border_ratio=0.15)
    assert rgb.dtype == np.uint8 and mask.dtype == np.uint8
    assert np.array_equal(rgb, f["recentered_rgb"])
    assert np.array_equal(mask, f["recentered_mask"])


def test_load_image_resizes_exactly_to_512():
    f = vector("f_preprocess_full")
    image_u8, mask_u8 = ImageProcessorV2(size=512, border_ratio=0.15).load_image(
        load_test_image(), border_ratio=0.15, to_tensor=False
    )
    assert np.array_equal(image_u8, f["image_u8"])
    assert np.array_equal(mask_u8, f["mask_u8"])


def test_processor_tensors_match():
    f = vector("f_preprocess_full")
    out = ImageProcessorV2(size=512, border_ratio=0.15)(load_test_image())
    assert out["image"].dtype == torch.float32
    assert max_abs(out["image"], f["image_tensor"]) == 0.0
    assert max_abs(out["mask"][:, 0, 0], f["mask_tensor_first_row"]) == 0.0


def test_full_size_dino_transform_matches_within_1e_5():
    with torch.device("meta"):
        encoder = DinoImageEncoder(DINOV2_LARGE_CONFIG, image_size=518)
    pixels = encoder.transform((tensor("f_preprocess_full", "image_tensor") + 1) / 2)
    assert max_abs(pixels, vector("f_preprocess_full")["dino_pixels"]) <= 1e-5


def test_config_border_ratio_overrides_the_call_argument():
    image = load_test_image()
    fixed = ImageProcessorV2(size=64, border_ratio=0.15)(image, border_ratio=0.5)["image"]
    reference = ImageProcessorV2(size=64)(image, border_ratio=0.15)["image"]
    assert torch.equal(fixed, reference)


def test_a_list_of_images_becomes_a_batch():
    out = ImageProcessorV2(size=32)([load_test_image(), load_test_image()])
    assert out["image"].shape == (2, 3, 32, 32) and out["mask"].shape == (2, 1, 32, 32)


def test_rgb_without_alpha_is_treated_as_fully_opaque():
    rgb = np.zeros((20, 30, 3), dtype=np.uint8)
    out_rgb, mask = recenter(rgb, 0.15)
    assert out_rgb.shape == (30, 30, 3) and mask.shape == (30, 30, 1)
    assert mask.max() == 255


def test_empty_alpha_is_rejected_with_a_clear_error():
    rgba = np.zeros((16, 16, 4), dtype=np.uint8)
    with pytest.raises(ValueError, match="alpha channel"):
        recenter(rgba)


def test_single_pixel_object_is_rejected():
    rgba = np.zeros((16, 16, 4), dtype=np.uint8)
    rgba[5, 5, 3] = 255
    with pytest.raises(ValueError, match="at least 2"):
        recenter(rgba)


def test_wrong_array_type_is_rejected():
    with pytest.raises(ValueError, match="uint8"):
        recenter(np.zeros((8, 8, 4), dtype=np.float32))
