"""Strict, offline loading of the SD-2.x KL autoencoder (``vae/`` of the multiview model folder).

diffusers' own ``from_pretrained`` only warns about missing weights and initialises them at random;
here every mismatch is an error naming the file and the key. The legacy mid-block attention names of
SD-2.x checkpoints (``query/key/value/proj_attn``) are renamed to diffusers' current ones on load.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
from diffusers import AutoencoderKL

from hy3dcore.loading import WeightsError, assign_state_dict, find_weights, load_weights, read_json

logger = logging.getLogger(__name__)

#: Legacy attention names of SD-2.x VAE checkpoints and their current diffusers names.
LEGACY_ATTENTION_NAMES = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
_LEGACY_KEY = re.compile(r"^(.*\.attentions\.\d+\.)(query|key|value|proj_attn)\.(weight|bias)$")


def rename_legacy_attention_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename ``*.attentions.N.{query,key,value,proj_attn}`` to ``to_q/to_k/to_v/to_out.0``.

    1x1-convolution weights of very old checkpoints ([C, C, 1, 1]) become linear weights [C, C].
    """
    renamed = {}
    for key, tensor in state_dict.items():
        match = _LEGACY_KEY.match(key)
        if match:
            prefix, name, kind = match.groups()
            key = f"{prefix}{LEGACY_ATTENTION_NAMES[name]}.{kind}"
            if kind == "weight" and tensor.ndim == 4:
                tensor = tensor[:, :, 0, 0]
        renamed[key] = tensor
    return renamed


def load_autoencoder(folder: str | Path, *, device: torch.device | str = "cpu",
                     dtype: torch.dtype = torch.float32) -> AutoencoderKL:
    """Load ``folder/config.json`` + ``diffusion_pytorch_model.{safetensors,bin}`` into ``AutoencoderKL``.

    A config without ``scaling_factor`` gets diffusers' default 0.18215 (as upstream). Raises
    ``WeightsError`` naming the file and the first missing/unexpected key or shape mismatch.
    """
    folder = Path(folder)
    config_path = folder / "config.json"
    config = {key: value for key, value in read_json(config_path).items() if not key.startswith("_")}
    try:
        with torch.device("meta"):
            vae = AutoencoderKL.from_config(config)
    except (TypeError, ValueError, KeyError) as error:
        raise WeightsError(f"{config_path}: not a valid AutoencoderKL config ({error})") from error
    weights_path = find_weights(folder)
    assign_state_dict(vae, rename_legacy_attention_keys(load_weights(weights_path)), weights_path)
    vae.to(device=device, dtype=dtype).eval().requires_grad_(False)
    logger.info("loaded VAE from %s (scaling_factor %s, %s, %s)", folder, vae.config.scaling_factor, device, dtype)
    return vae
