"""Strict, offline loading of configs and weights, with errors that name the file and the key.

Nothing here reaches a hub: every path is a local file. A state dict that does not match the module
exactly (missing key, unexpected key, shape mismatch) is rejected before any weight is assigned.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

#: Weight file names tried in a diffusers component folder, in order of preference.
DIFFUSERS_WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


class WeightsError(ValueError):
    """A weights folder or file that is missing, malformed, or does not match the model."""


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON object from ``path``; raise ``WeightsError`` naming the file if missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise WeightsError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(data, dict):
        raise WeightsError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def find_weights(folder: Path, names: tuple[str, ...] = DIFFUSERS_WEIGHT_NAMES) -> Path:
    """The first of ``names`` that exists in ``folder``; ``WeightsError`` listing them otherwise."""
    folder = Path(folder)
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise WeightsError(f"{folder}: no weights file; expected one of {', '.join(names)}")


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """Load a state dict from ``.safetensors`` or a torch pickle (``weights_only=True``, memory-mapped)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state_dict = load_file(str(path))
        else:
            try:
                state_dict = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # legacy (non-zip) pickles cannot be memory-mapped
                state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any decoder error: corrupt, truncated, or not a weights file
        raise WeightsError(f"{path}: cannot read weights ({type(error).__name__}: {error})") from error
    if not isinstance(state_dict, Mapping):
        raise WeightsError(f"{path}: expected a mapping of tensors, got {type(state_dict).__name__}")
    return dict(state_dict)


def select_entry(state: Mapping[str, Any], key: str, path: Path) -> dict[str, torch.Tensor]:
    """``state[key]`` (e.g. ``params_ema`` of a RealESRGAN checkpoint), with a clear error if absent."""
    if key not in state or not isinstance(state[key], Mapping):
        found = ", ".join(sorted(map(str, state))[:10]) or "nothing"
        raise WeightsError(f"{path}: expected the state dict under key {key!r}; found {found}")
    return dict(state[key])


def check_state_dict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: Path | str) -> None:
    """Raise ``WeightsError`` unless ``state_dict`` has exactly ``module``'s keys and shapes.

    The message names ``source``, the first missing key, the first unexpected key and the first
    shape mismatch (in the module's registration order), with their counts.
    """
    expected = module.state_dict(keep_vars=True)
    problems = []
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    mismatched = [key for key in expected if key in state_dict
                  and tuple(state_dict[key].shape) != tuple(expected[key].shape)]
    if missing:
        problems.append(f"{len(missing)} missing key(s), first {missing[0]!r}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s), first {unexpected[0]!r}")
    if mismatched:
        key = mismatched[0]
        problems.append(f"{len(mismatched)} shape mismatch(es), first {key!r}: file has "
                        f"{list(state_dict[key].shape)}, model expects {list(expected[key].shape)}")
    if problems:
        raise WeightsError(f"{source}: weights do not match the model: " + "; ".join(problems))


def assign_state_dict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: Path | str) -> None:
    """Check ``state_dict`` strictly, then assign its tensors into ``module`` (built on the meta
    device, so no memory or time is spent on a random initialisation)."""
    check_state_dict(module, state_dict, source)
    module.load_state_dict(state_dict, strict=True, assign=True)
    leftover = [name for name, tensor in list(module.named_parameters()) + list(module.named_buffers())
                if tensor.is_meta]
    if leftover:
        raise WeightsError(f"{source}: {len(leftover)} tensor(s) not provided by the file, first {leftover[0]!r}")
    logger.debug("loaded %d tensors from %s", len(state_dict), source)
