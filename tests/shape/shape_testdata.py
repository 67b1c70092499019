"""Paths and cached loaders for the shape parity vectors (``tests/data/shape``, see its README)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from PIL import Image

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "shape"
MODEL_ROOT = DATA_DIR / "model"
MODEL_FOLDER = MODEL_ROOT / "hunyuan3d-dit-v2-1"
KEYS_DIR = Path(__file__).resolve().parents[1] / "data" / "keys" / "shape"
TEST_IMAGE = DATA_DIR / "test_image.png"

# The run recorded in the vectors (README "The tiny model and the run").
STEPS = 6
GUIDANCE_SCALE = 5.0
SEED = 42
OCTREE_RESOLUTION = 48
NUM_CHUNKS = 5000
BOX_V = 1.01


@functools.cache
def vector(name: str) -> dict[str, np.ndarray]:
    """The arrays of ``<name>.npz`` (e.g. ``"b_dit_forward"``)."""
    with np.load(DATA_DIR / f"{name}.npz") as data:
        return {key: data[key] for key in data.files}


def tensor(name: str, key: str) -> torch.Tensor:
    return torch.from_numpy(vector(name)[key].copy())


def load_test_image() -> Image.Image:
    with Image.open(TEST_IMAGE) as image:
        return image.convert("RGBA")


@functools.cache
def tiny_pipeline(use_safetensors: bool = False):
    """The tiny checkpoint loaded in float32 on the CPU (shared by the tests of one session)."""
    from hy3dshape import Hunyuan3DDiTFlowMatchingPipeline

    return Hunyuan3DDiTFlowMatchingPipeline.from_pretrained(
        MODEL_ROOT, subfolder="hunyuan3d-dit-v2-1", device="cpu", dtype=torch.float32,
        use_safetensors=use_safetensors, variant="fp16",
    )


def max_abs(actual: torch.Tensor | np.ndarray, expected: torch.Tensor | np.ndarray) -> float:
    actual = actual.detach().cpu().numpy() if isinstance(actual, torch.Tensor) else np.asarray(actual)
    expected = expected.detach().cpu().numpy() if isinstance(expected, torch.Tensor) else np.asarray(expected)
    assert actual.shape == expected.shape, f"shape {actual.shape} != expected {expected.shape}"
    return float(np.abs(actual.astype(np.float64) - expected.astype(np.float64)).max())
