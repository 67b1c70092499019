"""Promises of background removal (``hy3dshape.rembg.BackgroundRemover``).

The rembg tests run the real ``rembg`` package through onnxruntime, on a small ONNX model with u2net's
interface that the tests build (``tiny_u2net``); nothing is downloaded.
"""

from __future__ import annotations

import logging
import sys

import cv2
import numpy as np
import pytest
from PIL import Image
from tiny_u2net import write_tiny_u2net

import hy3dshape
from hy3dshape.rembg import (
    MODEL_PATH_ENV,
    U2NET_HOME_ENV,
    BackgroundRemover,
    classical_foreground_mask,
)


@pytest.fixture(autouse=True)
def no_local_rembg_model(monkeypatch):
    """Each test starts with no rembg model configured, whatever the developer's shell says."""
    monkeypatch.delenv(MODEL_PATH_ENV, raising=False)
    monkeypatch.delenv(U2NET_HOME_ENV, raising=False)


def scene(background: tuple[int, int, int], width: int = 320, height: int = 240, seed: int = 0):
    """An object on a plain background with a slight gradient and sensor noise.

    The object is an ellipse with an arm; inside it sits a patch whose colour is within a few
    units of the background (it is not connected to the border, so it must stay object).
    Returns ``(PIL RGB image, true mask, patch mask)``.
    """
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[0:height, 0:width]
    pixels = np.empty((height, width, 3), dtype=np.float32)
    pixels[:] = background
    pixels += (columns / width * 6.0)[..., None]
    body = ((columns - 150) / 85) ** 2 + ((rows - 125) / 75) ** 2 <= 1
    arm = (columns > 210) & (columns < 280) & (rows > 110) & (rows < 135)
    patch = ((columns - 140) / 25) ** 2 + ((rows - 120) / 20) ** 2 <= 1
    pixels[body] = (40, 60, 180)
    pixels[arm] = (200, 80, 30)
    pixels[patch] = np.asarray(background, dtype=np.float32) + (4, -3, 5)
    pixels += rng.normal(0.0, 3.0, pixels.shape)
    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    return image, body | arm, patch


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_remover_is_exported_at_the_package_top_level():
    assert hy3dshape.BackgroundRemover is BackgroundRemover


@pytest.mark.parametrize(
    "background", [(255, 255, 255), (40, 160, 70), (128, 128, 128)], ids=["white", "green", "grey"]
)
def test_classical_mask_matches_the_object_on_a_plain_background(background):
    image, truth, patch = scene(background)
    result = BackgroundRemover()(image)
    assert result.mode == "RGBA" and result.size == image.size
    mask = np.asarray(result)[..., 3] >= 128
    assert iou(mask, truth) > 0.95
    assert mask[patch].mean() > 0.99  # interior pixels of the background's colour survive
    assert np.array_equal(np.asarray(result)[..., :3], np.asarray(image))  # colours untouched


def test_classical_mask_works_on_large_images_through_the_working_copy():
    image, truth, _ = scene((250, 250, 250))
    big = image.resize((2400, 1800), Image.NEAREST)
    mask = np.asarray(BackgroundRemover()(big))[..., 3] >= 128
    big_truth = np.asarray(Image.fromarray(truth).resize((2400, 1800), Image.NEAREST))
    assert iou(mask, big_truth) > 0.95


def test_classical_mask_drops_specks_and_keeps_the_largest_components():
    image, truth, _ = scene((255, 255, 255))
    pixels = np.asarray(image).copy()
    pixels[20:22, 20:22] = 0  # a 2 x 2 speck of dirt, removed by the morphological opening
    pixels[200:206, 20:26] = 0  # a 6 x 6 blob, under 5 % of the object's area
    mask = classical_foreground_mask(pixels) >= 128
    assert not mask[20:22, 20:22].any() and not mask[200:206, 20:26].any()
    assert iou(mask, truth) > 0.95


def test_classical_edge_is_soft_only_within_one_pixel_of_the_hard_edge():
    image, _, _ = scene((255, 255, 255))
    alpha = np.asarray(BackgroundRemover()(image))[..., 3]
    hard = (alpha >= 128).astype(np.uint8)
    square = np.ones((3, 3), dtype=np.uint8)
    edge_band = (cv2.dilate(hard, square) > 0) & ~(cv2.erode(hard, square) > 0)
    partial = (alpha > 0) & (alpha < 255)
    assert partial.any()
    assert not (partial & ~edge_band).any()


def test_an_image_with_an_alpha_mask_is_returned_unchanged():
    image, truth, _ = scene((255, 255, 255))
    rgba = image.convert("RGBA")
    rgba.putalpha(Image.fromarray((truth * 255).astype(np.uint8)))
    assert BackgroundRemover()(rgba) is rgba
    la_image = rgba.convert("LA")
    assert np.array_equal(np.asarray(BackgroundRemover()(la_image))[..., 3], np.asarray(la_image)[..., 1])


def test_a_constant_alpha_carries_no_mask_and_the_background_is_removed():
    image, truth, _ = scene((40, 160, 70))
    opaque = image.convert("RGBA")  # alpha 255 everywhere
    mask = np.asarray(BackgroundRemover()(opaque))[..., 3] >= 128
    assert iou(mask, truth) > 0.95


def test_an_image_without_an_object_is_a_clear_value_error():
    plain = Image.new("RGB", (64, 48), (250, 250, 250))
    with pytest.raises(ValueError, match="found no object"):
        BackgroundRemover()(plain)


def test_a_busy_border_is_logged_as_outside_what_the_fallback_handles(caplog):
    rng = np.random.default_rng(3)
    busy = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    busy[40:80, 50:110] = (255, 0, 0)
    with caplog.at_level(logging.WARNING, logger="hy3dshape.rembg"):
        BackgroundRemover()(Image.fromarray(busy))
    assert "expects a plain background" in caplog.text


def test_something_that_is_not_a_pil_image_is_a_type_error():
    with pytest.raises(TypeError, match="expects a PIL image"):
        BackgroundRemover()(np.zeros((8, 8, 3), dtype=np.uint8))


# ---------------------------------------------------------------------------------------------------
# Method selection and the real rembg path
# ---------------------------------------------------------------------------------------------------


@pytest.fixture
def u2net_model(tmp_path):
    """A tiny u2net-compatible model file at ``tmp_path/u2net/u2net.onnx``."""
    return write_tiny_u2net(tmp_path / "u2net" / "u2net.onnx")


def test_without_a_model_file_the_classical_method_is_used_and_logged(caplog):
    with caplog.at_level(logging.INFO, logger="hy3dshape.rembg"):
        remover = BackgroundRemover()
    assert remover.method == "classical" and remover.model_path is None
    assert "method=classical" in caplog.text and "neither is set" in caplog.text


@pytest.mark.parametrize("variable", [MODEL_PATH_ENV, U2NET_HOME_ENV])
def test_a_local_model_file_selects_rembg_and_its_load_log_says_so(monkeypatch, u2net_model, variable, caplog):
    monkeypatch.setenv(variable, str(u2net_model if variable == MODEL_PATH_ENV else u2net_model.parent))
    with caplog.at_level(logging.INFO, logger="hy3dshape.rembg"):
        remover = BackgroundRemover()
    assert remover.method == "rembg" and remover.model_path == u2net_model
    assert "method=rembg" in caplog.text and str(u2net_model) in caplog.text and "onnxruntime" in caplog.text


def test_rembg_runs_the_model_through_onnxruntime_and_its_mask_is_the_alpha(monkeypatch, u2net_model):
    monkeypatch.setenv(MODEL_PATH_ENV, str(u2net_model))
    image, truth, patch = scene((255, 255, 255))
    result = BackgroundRemover()(image)
    assert result.mode == "RGBA" and result.size == image.size
    mask = np.asarray(result)[..., 3] >= 128
    # The tiny model is a colour rule, so the white patch inside the object counts as background.
    assert iou(mask, truth & ~patch) > 0.9
    opaque = np.asarray(result)[..., 3] == 255
    assert opaque.sum() > 0.5 * truth.sum()
    assert np.array_equal(np.asarray(result)[..., :3][opaque], np.asarray(image)[opaque])  # colours kept


def test_rembg_background_is_transparent_white_as_the_official_app(monkeypatch, u2net_model):
    monkeypatch.setenv(MODEL_PATH_ENV, str(u2net_model))
    image, truth, _ = scene((255, 255, 255))
    pixels = np.asarray(BackgroundRemover()(image))
    background = ~truth & (pixels[..., 3] == 0)
    assert background.mean() > 0.5
    assert (pixels[background][:, :3] == 255).all()


def test_an_image_with_alpha_skips_rembg(monkeypatch, u2net_model):
    monkeypatch.setenv(MODEL_PATH_ENV, str(u2net_model))
    image, truth, _ = scene((255, 255, 255))
    rgba = image.convert("RGBA")
    rgba.putalpha(Image.fromarray((truth * 255).astype(np.uint8)))
    assert BackgroundRemover()(rgba) is rgba


def test_a_local_model_file_without_the_rembg_package_falls_back_to_classical(monkeypatch, u2net_model, caplog):
    monkeypatch.setenv(MODEL_PATH_ENV, str(u2net_model))
    monkeypatch.setitem(sys.modules, "rembg", None)  # makes ``import rembg`` raise ImportError
    with caplog.at_level(logging.INFO, logger="hy3dshape.rembg"):
        assert BackgroundRemover().method == "classical"
    assert "pip install rembg" in caplog.text


def test_a_model_path_that_is_not_a_file_is_logged_and_not_used(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(MODEL_PATH_ENV, str(tmp_path / "missing.onnx"))
    with caplog.at_level(logging.WARNING, logger="hy3dshape.rembg"):
        assert BackgroundRemover().method == "classical"
    assert f"{tmp_path / 'missing.onnx'} is not a file" in caplog.text


def test_forcing_rembg_without_a_model_names_the_path_that_was_looked_for(tmp_path, monkeypatch):
    with pytest.raises(RuntimeError, match="no local u2net model"):
        BackgroundRemover(method="rembg")
    monkeypatch.setenv(U2NET_HOME_ENV, str(tmp_path))
    with pytest.raises(RuntimeError, match=f"missing {tmp_path / 'u2net.onnx'}"):
        BackgroundRemover(method="rembg")


def test_an_unknown_method_is_a_value_error():
    with pytest.raises(ValueError, match="allowed: rembg, classical"):
        BackgroundRemover(method="grabcut")
