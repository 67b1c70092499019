"""DINOv2 image encoders of both stages: transformers' ``Dinov2Model``, built from the config, loaded strictly.

The shape stage's conditioner is DINOv2-L/14 (GELU MLP, 518 px) inside the shape checkpoint; the
texture stage uses ``facebook/dinov2-giant`` (SwiGLU MLP) from a Hugging Face folder. Both files use
the transformers 4.x names; transformers 5 renamed the attention and SwiGLU weights, so every load goes
through ``DINOV2_KEY_MAP`` and the files load unchanged. Also the ImageNet statistics both stages
normalise with. The stage-specific input transforms live with their stages
(``hy3dshape.models.conditioner``, ``hy3dpaint.dino``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hy3dcore.layout import TRANSFORMERS_CONFIG_FILE, TRANSFORMERS_WEIGHT_FILES
from hy3dcore.loading import (
    KeyMap,
    WeightsError,
    assign_state_dict,
    checkpoint_shapes,
    find_weights,
    load_weights,
    read_json,
)

if TYPE_CHECKING:  # transformers is imported on first use: importing this module stays cheap
    from transformers import Dinov2Config, Dinov2Model

logger = logging.getLogger(__name__)

#: ImageNet normalisation of DINOv2's input (per RGB channel, on [0, 1] pixels).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: The one key map of DINOv2 weights: transformers 4.x names (the official files, ``keys/conditioner.tsv``)
#: -> transformers 5.x ``Dinov2Model`` names. ``encoder.layer.N.attention.attention.{query,key,value}`` ->
#: ``attention.{q,k,v}_proj``, ``attention.output.dense`` -> ``attention.o_proj``; the SwiGLU MLP's
#: ``mlp.weights_in`` holds ``[gate; up]`` stacked along dim 0 -> ``mlp.gate_proj`` + ``mlp.up_proj``,
#: ``mlp.weights_out`` -> ``mlp.down_proj``. Under transformers 4.x no rule matches and names pass through.
DINOV2_KEY_MAP = KeyMap(rules=(
    (".attention.attention.query.", (".attention.q_proj.",)),
    (".attention.attention.key.", (".attention.k_proj.",)),
    (".attention.attention.value.", (".attention.v_proj.",)),
    (".attention.output.dense.", (".attention.o_proj.",)),
    (".mlp.weights_in.", (".mlp.gate_proj.", ".mlp.up_proj.")),
    (".mlp.weights_out.", (".mlp.down_proj.",)),
))

def dinov2_config(values: Mapping[str, Any] | Dinov2Config) -> Dinov2Config:
    """A transformers ``Dinov2Config`` from a Hugging Face style dict (``config.json``, or the inline config of
    the shape model's ``config.yaml``). Integral floats of integer fields (``mlp_ratio: 4.0``) are accepted.

    Raises ``ValueError`` for another ``model_type``, register tokens, an unknown activation, a hidden
    size not divisible by the head count, or a value transformers rejects.
    """
    from transformers import Dinov2Config
    from transformers.activations import ACT2FN

    if isinstance(values, Dinov2Config):
        return values
    integer_fields = {field.name for field in dataclasses.fields(Dinov2Config) if field.type in ("int", int)}
    values = dict(values)
    model_type = values.get("model_type", "dinov2")
    if model_type != "dinov2":
        raise ValueError(f"DINOv2 config: model_type is {model_type!r}; only 'dinov2' is supported")
    if values.get("num_register_tokens", 0):
        raise ValueError("DINOv2 config: DINOv2 with register tokens is not supported")
    for key, value in values.items():
        if key in integer_fields and isinstance(value, float) and value.is_integer():
            values[key] = int(value)
    try:
        config = Dinov2Config.from_dict(values)
    except Exception as error:  # transformers' strict dataclass errors are not ValueErrors
        raise ValueError(f"DINOv2 config: {error}") from error
    if config.hidden_act not in ACT2FN:
        raise ValueError(f"DINOv2 config: hidden_act {config.hidden_act!r} is not supported; allowed: {sorted(ACT2FN)}")
    if config.hidden_size % config.num_attention_heads:
        raise ValueError(f"DINOv2 config: hidden_size {config.hidden_size} is not divisible by "
                         f"num_attention_heads {config.num_attention_heads}")
    return config


def build_dinov2(config: Mapping[str, Any] | Dinov2Config) -> Dinov2Model:
    """``transformers.Dinov2Model`` of ``config`` (see ``dinov2_config``); build it under
    ``torch.device("meta")`` to skip the random initialisation before loading weights."""
    from transformers import Dinov2Model

    return Dinov2Model(dinov2_config(config))


def dinov2_checkpoint_shapes(config: Mapping[str, Any] | Dinov2Config) -> dict[str, tuple[int, ...]]:
    """Keys (official, transformers 4.x names) and shapes of a DINOv2 weights file for ``config``."""
    with torch.device("meta"):
        model = build_dinov2(config)
    return checkpoint_shapes(model, DINOV2_KEY_MAP)


def load_dinov2(
    folder: str | Path,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Dinov2Model:
    """Load a Hugging Face DINOv2 folder (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``,
    e.g. ``facebook/dinov2-giant``), never downloading.

    The weights are checked strictly through ``DINOV2_KEY_MAP``, cast to ``dtype`` once and placed on
    ``device``; the model comes back in eval mode without gradients. Raises ``WeightsError`` naming the
    missing file, the invalid config or the first missing / unexpected key (file names).
    """
    folder = Path(folder)
    config_path = folder / TRANSFORMERS_CONFIG_FILE
    if not config_path.is_file():
        raise WeightsError(f"DINOv2 folder {folder}: missing {TRANSFORMERS_CONFIG_FILE}")
    values = read_json(config_path)
    try:
        config = dinov2_config(values)
    except ValueError as error:
        raise WeightsError(f"{config_path}: {error}") from error
    weights_path = find_weights(folder, TRANSFORMERS_WEIGHT_FILES)
    with torch.device("meta"):
        model = build_dinov2(config)
    assign_state_dict(model, load_weights(weights_path), weights_path, device=device, dtype=dtype,
                      key_map=DINOV2_KEY_MAP)
    logger.info("loaded DINOv2 (%d layers, hidden %d, %s MLP) from %s as %s on %s", config.num_hidden_layers,
                config.hidden_size, "SwiGLU" if config.use_swiglu_ffn else "GELU", weights_path, dtype, device)
    return model.eval().requires_grad_(False)
