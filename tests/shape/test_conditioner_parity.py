"""Vector a: the conditioner (DINOv2 transform and tokens, zero unconditional context)."""

from __future__ import annotations

import torch
from shape_testdata import max_abs, tensor, tiny_pipeline, vector


def test_dino_pixels_match_within_1e_5():
    encoder = tiny_pipeline().conditioner.main_image_encoder
    pixels = encoder.transform((tensor("a_conditioner", "image") + 1) / 2)
    assert max_abs(pixels, vector("a_conditioner")["dino_pixels"]) <= 1e-5


def test_condition_tokens_match_within_1e_4():
    with torch.inference_mode():
        cond = tiny_pipeline().conditioner(image=tensor("a_conditioner", "image"))["main"]
    assert max_abs(cond, vector("a_conditioner")["cond"]) <= 1e-4


def test_unconditional_embedding_is_zeros_of_the_same_shape():
    uncond = tiny_pipeline().conditioner.unconditional_embedding(2)["main"]
    expected = vector("a_conditioner")["uncond"]
    assert max_abs(uncond, expected) == 0.0
    assert not expected.any()
