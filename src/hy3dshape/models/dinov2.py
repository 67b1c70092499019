"""DINOv2 vision transformer (image encoder), written for this project; no ``transformers`` dependency.

Parameter names follow transformers 4.x ``Dinov2Model`` so that the official checkpoints load as they
are: ``embeddings.{cls_token,mask_token,position_embeddings}``, ``embeddings.patch_embeddings.projection``,
``encoder.layer.N.{norm1, attention.attention.{query,key,value}, attention.output.dense,
layer_scale1.lambda1, norm2, mlp.{fc1,fc2} | mlp.{weights_in,weights_out}, layer_scale2.lambda1}``
and ``layernorm``.

Public API: ``Dinov2Config``, ``Dinov2Model(config)``, ``Dinov2Model.from_pretrained(folder)`` (a Hugging
Face folder with ``config.json`` and ``model.safetensors``, e.g. ``facebook/dinov2-giant``) and
``Dinov2Model.forward(pixel_values) -> last_hidden_state`` of shape ``[B, 1 + patches, hidden]``.

Used by the shape stage (DINOv2-L/14 at 518 px, GELU MLP) and by the texture stage (DINOv2-giant,
SwiGLU MLP, usually at 224 px: its 37 x 37 learned position grid is then resized to 16 x 16 with
float32 bicubic interpolation, ``align_corners=False``, like transformers' ``interpolate_pos_encoding``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hy3dshape.state_dicts import CheckpointError, load_state_dict_strict

logger = logging.getLogger(__name__)

#: Activation functions accepted for ``hidden_act`` (the GELU MLP variant).
ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
}

#: Hugging Face config keys that carry no information for inference (training-only or bookkeeping).
IGNORED_CONFIG_KEYS = frozenset(
    {
        "_name_or_path", "architectures", "transformers_version", "torch_dtype", "initializer_range",
        "attention_probs_dropout_prob", "hidden_dropout_prob", "drop_path_rate", "out_features",
        "out_indices", "stage_names", "apply_layernorm", "reshape_hidden_states", "use_mask_token",
        "model_type", "num_register_tokens",
    }
)

CONFIG_FILE = "config.json"
WEIGHTS_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclasses.dataclass(frozen=True)
class Dinov2Config:
    """Architecture of a DINOv2 ViT. Defaults are DINOv2-B/14 (transformers' defaults).

    ``hidden_size`` must be divisible by ``num_attention_heads``; ``hidden_act`` is a key of
    ``ACTIVATIONS``; ``use_swiglu_ffn`` selects the SwiGLU MLP of DINOv2-giant.
    """

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    mlp_ratio: float = 4.0
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-6
    image_size: int = 224
    patch_size: int = 14
    num_channels: int = 3
    qkv_bias: bool = True
    layerscale_value: float = 1.0
    use_swiglu_ffn: bool = False

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"Dinov2Config: hidden_size {self.hidden_size} is not divisible by "
                f"num_attention_heads {self.num_attention_heads}"
            )
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(
                f"Dinov2Config: hidden_act {self.hidden_act!r} is not supported; allowed: {sorted(ACTIVATIONS)}"
            )
        if self.patch_size < 1 or self.image_size < self.patch_size:
            raise ValueError(
                f"Dinov2Config: need 1 <= patch_size <= image_size, got {self.patch_size} and {self.image_size}"
            )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Dinov2Config:
        """Build from a Hugging Face style dict; bookkeeping keys are ignored, unknown ones logged.

        Raises ``ValueError`` for a ``model_type`` other than ``dinov2`` or register tokens (not supported).
        """
        model_type = values.get("model_type", "dinov2")
        if model_type != "dinov2":
            raise ValueError(f"Dinov2Config: model_type is {model_type!r}; only 'dinov2' is supported")
        if values.get("num_register_tokens", 0):
            raise ValueError("Dinov2Config: DINOv2 with register tokens is not supported")
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names - IGNORED_CONFIG_KEYS)
        if unknown:
            logger.debug("Dinov2Config: ignoring config keys %s", unknown)
        return cls(**{key: value for key, value in values.items() if key in names})

    @classmethod
    def from_json_file(cls, path: str | Path) -> Dinov2Config:
        """Read a ``config.json``. Raises ``FileNotFoundError`` or ``ValueError``."""
        with open(path, encoding="utf-8") as handle:
            return cls.from_dict(json.load(handle))

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def grid_size(self) -> int:
        """Patches per side at ``image_size`` (the learned position grid)."""
        return self.image_size // self.patch_size

    @property
    def swiglu_hidden_size(self) -> int:
        """Hidden width of the SwiGLU MLP: 2/3 of ``hidden_size * mlp_ratio``, rounded up to a multiple of 8."""
        hidden = int(self.hidden_size * self.mlp_ratio)
        return (int(hidden * 2 / 3) + 7) // 8 * 8


class Dinov2PatchEmbeddings(nn.Module):
    """Non-overlapping ``patch_size`` convolution: ``[B, C, H, W]`` -> ``[B, patches, hidden]`` (row-major)."""

    def __init__(self, config: Dinov2Config):
        super().__init__()
        self.num_channels = config.num_channels
        self.projection = nn.Conv2d(
            config.num_channels, config.hidden_size, kernel_size=config.patch_size, stride=config.patch_size
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.projection(pixel_values).flatten(2).transpose(1, 2)


class Dinov2Embeddings(nn.Module):
    """CLS token + patch embeddings + learned position embeddings (resized for other image sizes)."""

    def __init__(self, config: Dinov2Config):
        super().__init__()
        self.patch_size = config.patch_size
        self.grid_size = config.grid_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.mask_token = nn.Parameter(torch.zeros(1, config.hidden_size))  # in the checkpoints; unused here
        self.position_embeddings = nn.Parameter(torch.zeros(1, config.grid_size**2 + 1, config.hidden_size))
        self.patch_embeddings = Dinov2PatchEmbeddings(config)

    def position_embeddings_for(self, height: int, width: int) -> torch.Tensor:
        """Position embeddings for an input of ``height`` x ``width`` pixels: ``[1, 1 + patches, hidden]``."""
        rows, columns = height // self.patch_size, width // self.patch_size
        if rows == columns == self.grid_size:
            return self.position_embeddings
        cls_position = self.position_embeddings[:, :1]
        grid = self.position_embeddings[:, 1:]
        dim = grid.shape[-1]
        grid = grid.reshape(1, self.grid_size, self.grid_size, dim).permute(0, 3, 1, 2)
        grid = F.interpolate(grid.float(), size=(rows, columns), mode="bicubic", align_corners=False)
        grid = grid.to(self.position_embeddings.dtype).permute(0, 2, 3, 1).reshape(1, rows * columns, dim)
        return torch.cat((cls_position, grid), dim=1)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = pixel_values.shape
        patches = self.patch_embeddings(pixel_values.to(self.patch_embeddings.projection.weight.dtype))
        tokens = torch.cat((self.cls_token.expand(batch, -1, -1), patches), dim=1)
        return tokens + self.position_embeddings_for(height, width)


class Dinov2SelfAttention(nn.Module):
    """Separate query/key/value projections (with biases in DINOv2), SDPA attention."""

    def __init__(self, config: Dinov2Config):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias)
        self.key = nn.Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias)
        self.value = nn.Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = hidden_states.shape

        def heads(projection: nn.Linear) -> torch.Tensor:
            return projection(hidden_states).view(batch, tokens, self.num_heads, -1).transpose(1, 2)

        context = F.scaled_dot_product_attention(heads(self.query), heads(self.key), heads(self.value))
        return context.transpose(1, 2).reshape(batch, tokens, width)


class Dinov2SelfOutput(nn.Module):
    """Output projection of the attention (``attention.output.dense``)."""

    def __init__(self, config: Dinov2Config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.dense(hidden_states)


class Dinov2Attention(nn.Module):
    def __init__(self, config: Dinov2Config):
        super().__init__()
        self.attention = Dinov2SelfAttention(config)
        self.output = Dinov2SelfOutput(config)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.output(self.attention(hidden_states))


class Dinov2LayerScale(nn.Module):
    """Per-channel learned scale ``lambda1``."""

    def __init__(self, config: Dinov2Config):
        super().__init__()
        self.lambda1 = nn.Parameter(torch.full((config.hidden_size,), float(config.layerscale_value)))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return hidden_states * self.lambda1


class Dinov2MLP(nn.Module):
    """``fc1`` -> activation -> ``fc2`` with ``hidden_size * mlp_ratio`` hidden units."""

    def __init__(self, config: Dinov2Config):
        super().__init__()
        hidden = int(config.hidden_size * config.mlp_ratio)
        self.fc1 = nn.Linear(config.hidden_size, hidden)
        self.fc2 = nn.Linear(hidden, config.hidden_size)
        self.activation = ACTIVATIONS[config.hidden_act]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(hidden_states)))


class Dinov2SwiGLUMLP(nn.Module):
    """SwiGLU MLP of DINOv2-giant: ``weights_in`` gives [gate, value]; ``silu(gate) * value`` -> ``weights_out``."""

    def __init__(self, config: Dinov2Config):
        super().__init__()
        hidden = config.swiglu_hidden_size
        self.weights_in = nn.Linear(config.hidden_size, 2 * hidden)
        self.weights_out = nn.Linear(hidden, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        gate, value = self.weights_in(hidden_states).chunk(2, dim=-1)
        return self.weights_out(F.silu(gate) * value)


class Dinov2Layer(nn.Module):
    """Pre-norm transformer block with layer scale on both residual branches."""

    def __init__(self, config: Dinov2Config):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = Dinov2Attention(config)
        self.layer_scale1 = Dinov2LayerScale(config)
        self.norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = Dinov2SwiGLUMLP(config) if config.use_swiglu_ffn else Dinov2MLP(config)
        self.layer_scale2 = Dinov2LayerScale(config)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = hidden_states + self.layer_scale1(self.attention(self.norm1(hidden_states)))
        return hidden_states + self.layer_scale2(self.mlp(self.norm2(hidden_states)))


class Dinov2Encoder(nn.Module):
    def __init__(self, config: Dinov2Config):
        super().__init__()
        self.layer = nn.ModuleList(Dinov2Layer(config) for _ in range(config.num_hidden_layers))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        for layer in self.layer:
            hidden_states = layer(hidden_states)
        return hidden_states


class Dinov2Model(nn.Module):
    """DINOv2 ViT returning ``last_hidden_state`` (after the final LayerNorm, CLS token first)."""

    def __init__(self, config: Dinov2Config | Mapping[str, Any]):
        super().__init__()
        if not isinstance(config, Dinov2Config):
            config = Dinov2Config.from_dict(config)
        self.config = config
        self.embeddings = Dinov2Embeddings(config)
        self.encoder = Dinov2Encoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``pixel_values`` ``[B, C, H, W]`` (normalised) -> ``[B, 1 + (H // p) * (W // p), hidden]``.

        Raises ``ValueError`` for a wrong channel count or an input smaller than one patch.
        """
        if pixel_values.ndim != 4 or pixel_values.shape[1] != self.config.num_channels:
            raise ValueError(
                f"Dinov2Model expects pixel_values [B, {self.config.num_channels}, H, W], "
                f"got {list(pixel_values.shape)}"
            )
        if min(pixel_values.shape[-2:]) < self.config.patch_size:
            raise ValueError(
                f"Dinov2Model: image {list(pixel_values.shape[-2:])} is smaller than one "
                f"{self.config.patch_size}-pixel patch"
            )
        return self.layernorm(self.encoder(self.embeddings(pixel_values)))

    @classmethod
    def from_pretrained(
        cls,
        folder: str | Path,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> Dinov2Model:
        """Load a Hugging Face DINOv2 folder: ``config.json`` and ``model.safetensors`` (or ``pytorch_model.bin``).

        Weights are checked strictly (every key, every shape), cast to ``dtype`` and placed on ``device``;
        the model is returned in eval mode. Raises ``FileNotFoundError`` naming the missing file and
        ``hy3dshape.state_dicts.CheckpointError`` for mismatching weights. Never downloads anything.
        """
        folder = Path(folder)
        config_path = folder / CONFIG_FILE
        if not config_path.is_file():
            raise FileNotFoundError(f"DINOv2 folder {folder}: missing {CONFIG_FILE}")
        config = Dinov2Config.from_json_file(config_path)
        weights_path = next((folder / name for name in WEIGHTS_FILES if (folder / name).is_file()), None)
        if weights_path is None:
            raise FileNotFoundError(f"DINOv2 folder {folder}: missing weights, expected one of {list(WEIGHTS_FILES)}")
        if weights_path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state_dict = load_file(str(weights_path))
        else:
            state_dict = torch.load(weights_path, map_location="cpu", weights_only=True)
            if not isinstance(state_dict, dict):
                raise CheckpointError(f"{weights_path}: expected a state dict, got {type(state_dict).__name__}")
        with torch.device("meta"):
            model = cls(config)
        load_state_dict_strict(model, state_dict, source=str(weights_path), device=device, dtype=dtype)
        logger.info(
            "loaded DINOv2 (%d layers, hidden %d, %s MLP) from %s",
            config.num_hidden_layers,
            config.hidden_size,
            "SwiGLU" if config.use_swiglu_ffn else "GELU",
            weights_path,
        )
        return model

    @property
    def num_tokens(self) -> int:
        """Output tokens at the configured ``image_size`` (CLS + patches)."""
        return self.config.grid_size**2 + 1

    def extra_repr(self) -> str:
        config = self.config
        return f"hidden={config.hidden_size}, layers={config.num_hidden_layers}, heads={config.num_attention_heads}"

