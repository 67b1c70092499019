"""Reading an official ``hunyuan3d-dit-v2-1`` folder: ``config.yaml`` and the weights file (FACTS §1).

* ``config.yaml`` names upstream classes (``target``) with constructor ``params``. Targets are mapped
  to our classes through the fixed table ``TARGETS``; nothing named in a file is ever imported.
  Unknown targets, a target in the wrong section and unknown parameters are rejected.
* Weights: ``model.fp16.ckpt`` (``torch.load(weights_only=True)``: a dict with exactly ``model``,
  ``vae``, ``conditioner``) or ``model.fp16.safetensors`` (flat, ``<part>.<key>``, split at the first
  dot). Each part is loaded strictly into a module built on the ``meta`` device (see
  ``hy3dcore.loading``); the VAE's encoder keys (``encoder.*``, ``pre_kl.*``) may be present or
  absent; the conditioner's DINOv2 keys are read through ``CHECKPOINT_KEY_MAPS`` (transformers 4.x
  names in the file). A missing ``conditioner`` entry is an error (upstream keeps a random DINOv2 silently).
* Every failure is a ``hy3dcore.loading.WeightsError`` (``ConfigError`` for ``config.yaml``) naming
  the folder, file, entry or key.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from hy3dcore.layout import SHAPE_CONFIG_FILE, SHAPE_SUBFOLDER
from hy3dcore.loading import KeyMap, WeightsError, assign_state_dict, checkpoint_shapes, load_weights
from hy3dshape.models.conditioner import CHECKPOINT_KEY_MAP as CONDITIONER_KEY_MAP
from hy3dshape.models.conditioner import SingleImageEncoder
from hy3dshape.models.dit import HunYuanDiTPlain
from hy3dshape.models.vae import ENCODER_KEY_PREFIXES, ShapeVAE
from hy3dshape.preprocessors import ImageProcessorV2
from hy3dshape.schedulers import FlowMatchEulerDiscreteScheduler

logger = logging.getLogger(__name__)

CONFIG_FILE = SHAPE_CONFIG_FILE
DEFAULT_SUBFOLDER = SHAPE_SUBFOLDER
DEFAULT_VARIANT = "fp16"
#: Entries of the weights file, in the order they are loaded.
CHECKPOINT_PARTS = ("model", "vae", "conditioner")
#: Parts whose module names differ from the file's (transformers 5 vs the checkpoint's 4.x DINOv2 names).
CHECKPOINT_KEY_MAPS: dict[str, KeyMap] = {"conditioner": CONDITIONER_KEY_MAP}
#: Keys of a part that may be present or absent in the file (the VAE's unused point-cloud encoder).
OPTIONAL_KEY_PREFIXES: dict[str, tuple[str, ...]] = {"vae": ENCODER_KEY_PREFIXES}
#: Sections of ``config.yaml`` that must be present.
REQUIRED_SECTIONS = ("model", "vae", "conditioner", "scheduler", "image_processor")

#: Official target name -> (config section, our class). ``None``: accepted, nothing to build.
TARGETS: dict[str, tuple[str, type | None]] = {
    "hy3dshape.models.denoisers.hunyuandit.HunYuanDiTPlain": ("model", HunYuanDiTPlain),
    "hy3dshape.models.autoencoders.ShapeVAE": ("vae", ShapeVAE),
    "hy3dshape.models.conditioner.SingleImageEncoder": ("conditioner", SingleImageEncoder),
    "hy3dshape.schedulers.FlowMatchEulerDiscreteScheduler": ("scheduler", FlowMatchEulerDiscreteScheduler),
    "hy3dshape.preprocessors.ImageProcessorV2": ("image_processor", ImageProcessorV2),
    "hy3dshape.pipelines.Hunyuan3DDiTFlowMatchingPipeline": ("pipeline", None),
}


class ConfigError(WeightsError):
    """A ``config.yaml`` that does not describe a supported Hunyuan3D-2.1 shape model."""


def weights_filename(use_safetensors: bool = False, variant: str | None = DEFAULT_VARIANT) -> str:
    """``model{.variant}.{ckpt|safetensors}``, as upstream."""
    suffix = "safetensors" if use_safetensors else "ckpt"
    return f"model.{variant}.{suffix}" if variant else f"model.{suffix}"


def resolve_model_folder(model_path: str | Path, subfolder: str | None = DEFAULT_SUBFOLDER) -> Path:
    """``<model_path>/<subfolder>``, which must be an existing local folder (no hub access, ever).

    Raises ``WeightsError`` naming the folder that is missing.
    """
    root = Path(model_path).expanduser()
    folder = root / subfolder if subfolder else root
    if not root.is_dir():
        raise WeightsError(
            f"model folder {root} does not exist; download the weights there first "
            f"(e.g. tencent/Hunyuan3D-2.1 with its {DEFAULT_SUBFOLDER}/ folder). Nothing is downloaded at run time."
        )
    if not folder.is_dir():
        raise WeightsError(f"model folder {root} has no subfolder {subfolder!r} (looked for {folder})")
    return folder


def read_config(path: str | Path) -> dict[str, Any]:
    """Parse and check ``config.yaml``: every required section with a known ``target`` for that section.

    Raises ``WeightsError`` (missing file) or ``ConfigError`` naming the file and the offending entry.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"missing {path.name} in {path.parent}")
    with open(path, encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    if not isinstance(config, Mapping):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(config).__name__}")
    for section in REQUIRED_SECTIONS:
        if section not in config:
            raise ConfigError(f"{path}: missing section {section!r}; required: {list(REQUIRED_SECTIONS)}")
    for section, entry in config.items():
        if not isinstance(entry, Mapping) or "target" not in entry:
            raise ConfigError(f"{path}: section {section!r} must be a mapping with a 'target'")
        target = entry["target"]
        if target not in TARGETS:
            known = sorted(name for name, (where, _) in TARGETS.items() if where == section)
            raise ConfigError(f"{path}: {section}.target {target!r} is not a known class; allowed: {known}")
        expected_section = TARGETS[target][0]
        if expected_section != section:
            raise ConfigError(f"{path}: {section}.target {target!r} belongs in section {expected_section!r}")
        params = entry.get("params") or {}
        if not isinstance(params, Mapping):
            raise ConfigError(f"{path}: {section}.params must be a mapping, got {type(params).__name__}")
    return dict(config)


def build_component(config: Mapping[str, Any], section: str, source: str = CONFIG_FILE) -> Any:
    """Instantiate the class of ``config[section]`` with its ``params`` (call under ``torch.device('meta')``
    to build a network without allocating weights). Raises ``ConfigError`` for unknown parameters or
    values the class rejects."""
    entry = config[section]
    cls = TARGETS[entry["target"]][1]
    if cls is None:
        raise ConfigError(f"{source}: section {section!r} does not build a component")
    params = dict(entry.get("params") or {})
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ConfigError(f"{source}: {section}.params has unknown parameter(s) {unknown}; allowed: {sorted(accepted)}")
    try:
        return cls(**params)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{source}: {section}: {error}") from error


def read_weights(path: str | Path) -> dict[str, dict[str, torch.Tensor]]:
    """Read a ``.ckpt`` or ``.safetensors`` weights file into ``{part: state_dict}`` for the three parts.

    Raises ``WeightsError`` naming the file and the first offending entry.
    """
    path = Path(path)
    if path.suffix not in (".ckpt", ".safetensors"):
        raise WeightsError(f"{path.name}: unsupported weights format; expected .ckpt or .safetensors")
    loaded = load_weights(path)
    if path.suffix == ".safetensors":
        parts: dict[str, dict[str, torch.Tensor]] = {part: {} for part in CHECKPOINT_PARTS}
        for key, tensor in loaded.items():
            part, dot, name = key.partition(".")
            if not dot or part not in parts:
                raise WeightsError(
                    f"{path.name}: key {key!r} does not start with one of {[p + '.' for p in CHECKPOINT_PARTS]}"
                )
            parts[part][name] = tensor
        for part, state_dict in parts.items():
            if not state_dict:
                raise WeightsError(f"{path.name}: no '{part}.*' keys; the file must hold {list(CHECKPOINT_PARTS)}")
        return parts
    for part in CHECKPOINT_PARTS:
        if part not in loaded:
            raise WeightsError(f"{path.name}: missing entry {part!r}; the file must hold {list(CHECKPOINT_PARTS)}")
        if not isinstance(loaded[part], dict):
            raise WeightsError(f"{path.name}: entry {part!r} is a {type(loaded[part]).__name__}, not a state dict")
    unexpected = sorted(set(loaded) - set(CHECKPOINT_PARTS))
    if unexpected:
        raise WeightsError(f"{path.name}: unexpected entry {unexpected[0]!r}; allowed: {list(CHECKPOINT_PARTS)}")
    return {part: loaded[part] for part in CHECKPOINT_PARTS}


def part_checkpoint_shapes(part: str, module: nn.Module) -> dict[str, tuple[int, ...]]:
    """The keys (as named in the official file) and shapes of ``module`` as checkpoint part ``part``."""
    return checkpoint_shapes(module, CHECKPOINT_KEY_MAPS.get(part))


def load_components(
    folder: str | Path,
    *,
    device: torch.device | str,
    dtype: torch.dtype,
    use_safetensors: bool = False,
    variant: str | None = DEFAULT_VARIANT,
) -> dict[str, Any]:
    """Build every component of the folder and load its weights once, strictly.

    Returns ``{"model", "vae", "conditioner", "scheduler", "image_processor"}``; the networks are in
    eval mode without gradients on ``device`` in ``dtype``. Raises ``WeightsError`` (``ConfigError``
    for ``config.yaml``) naming the missing file or the first offending entry or key.
    """
    folder = Path(folder)
    config_path = folder / CONFIG_FILE
    config = read_config(config_path)
    weights_path = folder / weights_filename(use_safetensors, variant)
    if not weights_path.is_file():
        present = sorted(p.name for p in folder.glob("model*"))
        raise WeightsError(f"missing weights file {weights_path.name} in {folder} (found: {present or 'none'})")
    with torch.device("meta"):
        networks = {part: build_component(config, part, str(config_path)) for part in CHECKPOINT_PARTS}
    weights = read_weights(weights_path)
    for part in CHECKPOINT_PARTS:
        assign_state_dict(
            networks[part],
            weights.pop(part),
            f"{weights_path.name} [{part}]",
            device=device,
            dtype=dtype,
            ignore_prefixes=OPTIONAL_KEY_PREFIXES.get(part, ()),
            key_map=CHECKPOINT_KEY_MAPS.get(part),
        )
        networks[part].requires_grad_(False).eval()
    logger.info("loaded %s (%s on %s)", weights_path, dtype, device)
    return {
        **networks,
        "scheduler": build_component(config, "scheduler", str(config_path)),
        "image_processor": build_component(config, "image_processor", str(config_path)),
    }
