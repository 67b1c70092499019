"""The flow-matching denoiser of Hunyuan3D-2.1: ``HunYuanDiTPlain`` (FACTS §4).

``model(x, t, {"main": context})``: latents ``x`` ``[B, N, C]``, time ``t`` ``[B]`` in [0, 1] (0 = noise,
1 = data), image tokens ``[B, T, context_dim]`` -> predicted velocity ``[B, N, C]``.

Structure: the time embedding is *prepended as a token* (no modulation); ``depth`` pre-norm blocks of
self-attention, cross-attention and a feed-forward (dense MLP, or MoE in the last ``num_moe_layers``
blocks); U-Net style long skips (block ``depth - 1 - i`` consumes block ``i``'s output for
``i < depth // 2``, concatenated as ``[skip, x]``); final LayerNorm, time token dropped, linear head.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hy3dshape.models.attention import NORM_EPS, CrossAttention, SelfAttention
from hy3dshape.models.moe import MoEBlock

logger = logging.getLogger(__name__)

#: Period constant of the sinusoidal time embedding.
TIME_EMBEDDING_MAX_PERIOD = 10000.0


def timestep_sinusoid(t: torch.Tensor, channels: int) -> torch.Tensor:
    """Sinusoidal embedding ``[sin(t f_k)..., cos(t f_k)...]`` with ``f_k = exp(-ln(10000) k / (channels/2))``.

    ``t`` ``[B]`` is used as given (in [0, 1], not scaled by 1000); computed in float32, shape ``[B, channels]``.
    """
    half = channels // 2
    exponent = -math.log(TIME_EMBEDDING_MAX_PERIOD) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    angles = t.float()[:, None] * torch.exp(exponent)[None]
    embedding = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
    if channels % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


class TimestepEmbedder(nn.Module):
    """Sinusoid of ``hidden_size`` channels -> Linear -> GELU -> Linear: one ``[B, 1, hidden]`` time token."""

    def __init__(self, hidden_size: int, frequency_channels: int | None = None, mlp_ratio: int = 4):
        super().__init__()
        self.frequency_channels = frequency_channels or hidden_size
        self.mlp = nn.Sequential(
            nn.Linear(self.frequency_channels, hidden_size * mlp_ratio),
            nn.GELU(),
            nn.Linear(hidden_size * mlp_ratio, hidden_size),
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        embedding = timestep_sinusoid(t, self.frequency_channels).to(self.mlp[0].weight.dtype)
        return self.mlp(embedding).unsqueeze(1)


class MLP(nn.Module):
    """Dense feed-forward ``fc1`` -> exact GELU -> ``fc2``."""

    def __init__(self, dim: int, inner_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, inner_dim)
        self.fc2 = nn.Linear(inner_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class DiTBlock(nn.Module):
    """One block: optional long-skip fusion, self-attention, cross-attention, feed-forward (all pre-norm)."""

    def __init__(
        self,
        hidden_size: int,
        context_dim: int,
        num_heads: int,
        *,
        mlp_ratio: float,
        qkv_bias: bool,
        qk_norm: bool,
        skip_connection: bool,
        use_moe: bool,
        num_experts: int,
        moe_top_k: int,
    ):
        super().__init__()
        inner = int(hidden_size * mlp_ratio)
        self.norm1 = nn.LayerNorm(hidden_size, eps=NORM_EPS)
        self.attn1 = SelfAttention(hidden_size, num_heads, qkv_bias=qkv_bias, qk_norm=qk_norm)
        self.norm2 = nn.LayerNorm(hidden_size, eps=NORM_EPS)
        self.attn2 = CrossAttention(hidden_size, context_dim, num_heads, qkv_bias=qkv_bias, qk_norm=qk_norm)
        self.norm3 = nn.LayerNorm(hidden_size, eps=NORM_EPS)
        if skip_connection:
            self.skip_norm = nn.LayerNorm(hidden_size, eps=NORM_EPS)
            self.skip_linear = nn.Linear(2 * hidden_size, hidden_size)
        else:
            self.skip_norm = self.skip_linear = None
        if use_moe:
            self.moe = MoEBlock(hidden_size, num_experts=num_experts, top_k=moe_top_k, ff_inner_dim=inner)
            self.mlp = None
        else:
            self.mlp = MLP(hidden_size, inner)
            self.moe = None

    def forward(self, x: torch.Tensor, context: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if self.skip_linear is not None:
            if skip is None:
                raise ValueError("this DiT block has a long skip connection and needs the skip tensor")
            x = self.skip_norm(self.skip_linear(torch.cat([skip, x], dim=-1)))
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context)
        feed_forward = self.moe if self.moe is not None else self.mlp
        return x + feed_forward(self.norm3(x))


class FinalLayer(nn.Module):
    """LayerNorm over all tokens, drop the time token, project to the latent channels."""

    def __init__(self, hidden_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, eps=NORM_EPS)
        self.linear = nn.Linear(hidden_size, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm_final(x)[:, 1:])


class HunYuanDiTPlain(nn.Module):
    """Hunyuan3D-2.1 shape denoiser. Constructor arguments are those of the official ``config.yaml``.

    Only the variant used by ``hunyuan3d-dit-v2-1`` is implemented: no positional embedding, no
    attention pooling, no decoupled cross-attention, RMS qk-norm, LayerNorm blocks. A config asking for
    anything else is rejected with ``ValueError``.
    """

    def __init__(
        self,
        input_size: int = 4096,
        in_channels: int = 64,
        hidden_size: int = 2048,
        context_dim: int = 1024,
        depth: int = 21,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        qk_norm: bool = True,
        qk_norm_type: str = "rms",
        qkv_bias: bool = False,
        text_len: int = 1370,
        num_moe_layers: int = 6,
        num_experts: int = 8,
        moe_top_k: int = 2,
        use_pos_emb: bool = False,
        use_attention_pooling: bool = False,
        with_decoupled_ca: bool = False,
        norm_type: str = "layer",
        guidance_cond_proj_dim: int | None = None,
    ):
        super().__init__()
        unsupported = {
            "use_pos_emb": (use_pos_emb, False),
            "use_attention_pooling": (use_attention_pooling, False),
            "with_decoupled_ca": (with_decoupled_ca, False),
            "qk_norm_type": (qk_norm_type, "rms"),
            "norm_type": (norm_type, "layer"),
            "guidance_cond_proj_dim": (guidance_cond_proj_dim, None),
        }
        for name, (value, supported) in unsupported.items():
            if value != supported:
                raise ValueError(
                    f"HunYuanDiTPlain: {name}={value!r} is not supported; only {supported!r} "
                    "(the hunyuan3d-dit-v2-1 configuration) is implemented"
                )
        if not 0 <= num_moe_layers <= depth:
            raise ValueError(f"HunYuanDiTPlain: num_moe_layers must be in [0, depth={depth}], got {num_moe_layers}")
        self.input_size = input_size  # number of latent tokens
        self.in_channels = in_channels
        self.hidden_size = hidden_size
        self.depth = depth
        self.text_len = text_len
        self.x_embedder = nn.Linear(in_channels, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.blocks = nn.ModuleList(
            DiTBlock(
                hidden_size,
                context_dim,
                num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                qk_norm=qk_norm,
                skip_connection=layer > depth // 2,
                use_moe=depth - layer <= num_moe_layers,
                num_experts=num_experts,
                moe_top_k=moe_top_k,
            )
            for layer in range(depth)
        )
        self.final_layer = FinalLayer(hidden_size, in_channels)

    def fuse_weights(self) -> HunYuanDiTPlain:
        """Inference layout, once after loading: every attention's concatenated projections become one
        weight (``fuse_projections``) and the MoE experts are stacked for grouped matmuls
        (``stack_experts``). No extra memory, same state-dict keys and values; returns ``self``."""
        for module in self.modules():
            if hasattr(module, "fuse_projections"):
                module.fuse_projections()
            if hasattr(module, "stack_experts"):
                module.stack_experts()
        return self

    @property
    def moe_layers(self) -> list[int]:
        """Indices of the blocks whose feed-forward is a mixture of experts."""
        return [index for index, block in enumerate(self.blocks) if block.moe is not None]

    @property
    def dtype(self) -> torch.dtype:
        return self.x_embedder.weight.dtype

    def forward(self, x: torch.Tensor, t: torch.Tensor, contexts: dict[str, torch.Tensor], **_: Any) -> torch.Tensor:
        """Velocity prediction; see the module docstring for shapes."""
        if x.ndim != 3 or x.shape[-1] != self.in_channels:
            raise ValueError(f"DiT expects latents [B, N, {self.in_channels}], got {list(x.shape)}")
        context = contexts["main"].to(self.dtype)
        t = t.reshape(-1)
        if t.numel() == 1 and x.shape[0] > 1:
            t = t.expand(x.shape[0])
        hidden = torch.cat([self.t_embedder(t), self.x_embedder(x.to(self.dtype))], dim=1)
        skips: list[torch.Tensor] = []
        middle = self.depth // 2
        for layer, block in enumerate(self.blocks):
            skip = skips.pop() if layer > middle else None
            hidden = block(hidden, context, skip)
            if layer < middle:
                skips.append(hidden)
        return self.final_layer(hidden)
