"""Decoder half of the shape VAE (``ShapeVAE``, FACTS §6).

* ``vae(latents)``: ``[B, N, embed_dim]`` (already divided by ``scale_factor``) -> ``post_kl`` ->
  ``transformer`` (pre-norm self-attention blocks) -> decoded tokens ``[B, N, width]``.
* ``vae.geo_decoder(queries=[B, P, 3], latents=decoded)`` -> occupancy logits ``[B, P, 1]`` (positive
  inside): Fourier features -> ``query_proj`` -> one cross-attention block -> ``ln_post`` -> ``output_proj``.

The point-cloud encoder (``encoder.*``, ``pre_kl``) is training-only and is not built; its keys in a
checkpoint are ignored. Like the DiT, q/k/v are split per head out of the fused projections and q, k
get a LayerNorm over the head dimension.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from hy3dshape.surface_extractors import MCSurfaceExtractor
from hy3dshape.volume_decoders import VanillaVolumeDecoder

logger = logging.getLogger(__name__)

#: Epsilon of the VAE LayerNorms; ``geo_decoder.ln_post`` alone uses torch's default 1e-5.
NORM_EPS = 1e-6
LN_POST_EPS = 1e-5

#: Prefixes of checkpoint keys that belong to the (unused) point-cloud encoder.
ENCODER_KEY_PREFIXES = ("encoder.", "pre_kl.")


class LatentKV(NamedTuple):
    """Per-head keys (after the k-norm) and values of the latent tokens, ``[B, H, N, head_dim]`` each."""

    key: torch.Tensor
    value: torch.Tensor


#: ``attention(q, k, v)`` on ``[B, H, *, head_dim]`` tensors -> ``[B, H, P, head_dim]``.
AttentionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class FourierEmbedder(nn.Module):
    """``p -> [p, sin(p_d 2^f)..., cos(p_d 2^f)...]``, dimension-major, ``f = 0..num_freqs-1`` (x pi if asked).

    Frequencies are recomputed on every call (8 values) in the input's dtype, so the module holds no
    buffers and builds on the ``meta`` device.
    """

    def __init__(self, num_freqs: int = 8, include_pi: bool = False, input_dim: int = 3):
        super().__init__()
        self.num_freqs = num_freqs
        self.include_pi = include_pi
        self.out_dim = input_dim * (2 * num_freqs + 1)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        frequencies = 2.0 ** torch.arange(self.num_freqs, dtype=torch.float32, device=points.device)
        if self.include_pi:
            frequencies = frequencies * torch.pi
        angles = (points[..., None] * frequencies.to(points.dtype)).reshape(*points.shape[:-1], -1)
        return torch.cat([points, angles.sin(), angles.cos()], dim=-1)


class HeadNorms(nn.Module):
    """Per-head q and k LayerNorms (``attention.q_norm``, ``attention.k_norm``) and the attention itself."""

    def __init__(self, head_dim: int, qk_norm: bool):
        super().__init__()
        self.q_norm = nn.LayerNorm(head_dim, eps=NORM_EPS) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(head_dim, eps=NORM_EPS) if qk_norm else nn.Identity()

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """``[B, N, H, d]`` q and ``[B, M, H, d]`` k/v -> ``[B, N, H * d]``."""
        batch, tokens = query.shape[:2]
        context = F.scaled_dot_product_attention(
            self.q_norm(query).transpose(1, 2), self.k_norm(key).transpose(1, 2), value.transpose(1, 2)
        )
        return context.transpose(1, 2).reshape(batch, tokens, -1)


class SelfAttention(nn.Module):
    """Fused ``c_qkv`` (no bias) split per head into q, k, v; ``c_proj`` with bias."""

    def __init__(self, width: int, heads: int, qkv_bias: bool, qk_norm: bool):
        super().__init__()
        if width % heads:
            raise ValueError(f"VAE attention: width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.c_qkv = nn.Linear(width, 3 * width, bias=qkv_bias)
        self.c_proj = nn.Linear(width, width)
        self.attention = HeadNorms(width // heads, qk_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape
        qkv = self.c_qkv(x).view(batch, tokens, self.heads, -1)
        query, key, value = qkv.split(width // self.heads, dim=-1)
        return self.c_proj(self.attention(query, key, value))


class CrossAttention(nn.Module):
    """``c_q`` on the queries, fused ``c_kv`` on the latents split per head into k, v; ``c_proj``."""

    def __init__(self, width: int, heads: int, qkv_bias: bool, qk_norm: bool):
        super().__init__()
        if width % heads:
            raise ValueError(f"VAE attention: width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.c_q = nn.Linear(width, width, bias=qkv_bias)
        self.c_kv = nn.Linear(width, 2 * width, bias=qkv_bias)
        self.c_proj = nn.Linear(width, width)
        self.attention = HeadNorms(width // heads, qk_norm)

    def latent_kv(self, latents: torch.Tensor) -> LatentKV:
        """Keys (k-normed) and values of the latent tokens ``[B, M, width]``, each ``[B, H, M, d]``."""
        batch, tokens, width = latents.shape
        head_dim = width // self.heads
        key, value = self.c_kv(latents).view(batch, tokens, self.heads, 2 * head_dim).split(head_dim, dim=-1)
        return LatentKV(self.attention.k_norm(key).transpose(1, 2), value.transpose(1, 2))

    def queries(self, x: torch.Tensor) -> torch.Tensor:
        """Per-head q-normed queries ``[B, H, P, d]`` of the query features ``[B, P, width]``."""
        batch, tokens, width = x.shape
        query = self.c_q(x).view(batch, tokens, self.heads, width // self.heads)
        return self.attention.q_norm(query).transpose(1, 2)

    def attend(self, x: torch.Tensor, kv: LatentKV, attention: AttentionFn | None = None) -> torch.Tensor:
        """Cross-attention output ``[B, P, width]`` of the query features against precomputed ``kv``.

        ``attention(q, k, v)`` on ``[B, H, *, d]`` tensors defaults to ``scaled_dot_product_attention``.
        """
        batch, tokens, _ = x.shape
        context = (attention or F.scaled_dot_product_attention)(self.queries(x), kv.key, kv.value)
        return self.c_proj(context.transpose(1, 2).reshape(batch, tokens, -1))

    def forward(self, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        return self.attend(x, self.latent_kv(latents))


class MLP(nn.Module):
    """``c_fc`` -> exact GELU -> ``c_proj``."""

    def __init__(self, width: int, expand_ratio: int = 4):
        super().__init__()
        self.c_fc = nn.Linear(width, width * expand_ratio)
        self.c_proj = nn.Linear(width * expand_ratio, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))


class ResidualAttentionBlock(nn.Module):
    """``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))``."""

    def __init__(self, width: int, heads: int, qkv_bias: bool, qk_norm: bool):
        super().__init__()
        self.attn = SelfAttention(width, heads, qkv_bias, qk_norm)
        self.ln_1 = nn.LayerNorm(width, eps=NORM_EPS)
        self.mlp = MLP(width)
        self.ln_2 = nn.LayerNorm(width, eps=NORM_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, heads: int, layers: int, qkv_bias: bool, qk_norm: bool):
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads, qkv_bias, qk_norm) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x)
        return x


class ResidualCrossAttentionBlock(nn.Module):
    """``x + attn(ln_1(x), ln_2(latents))`` then ``x + mlp(ln_3(x))``."""

    def __init__(self, width: int, heads: int, qkv_bias: bool, qk_norm: bool, mlp_expand_ratio: int):
        super().__init__()
        self.attn = CrossAttention(width, heads, qkv_bias, qk_norm)
        self.ln_1 = nn.LayerNorm(width, eps=NORM_EPS)
        self.ln_2 = nn.LayerNorm(width, eps=NORM_EPS)
        self.ln_3 = nn.LayerNorm(width, eps=NORM_EPS)
        self.mlp = MLP(width, mlp_expand_ratio)

    def latent_kv(self, latents: torch.Tensor) -> LatentKV:
        """The attention keys and values of the latent tokens; computed once per request."""
        return self.attn.latent_kv(self.ln_2(latents))

    def forward_kv(self, x: torch.Tensor, kv: LatentKV, attention: AttentionFn | None = None) -> torch.Tensor:
        """The block applied to query features ``x`` with precomputed latent keys and values."""
        x = x + self.attn.attend(self.ln_1(x), kv, attention)
        return x + self.mlp(self.ln_3(x))

    def forward(self, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        return self.forward_kv(x, self.latent_kv(latents))


class GeometryDecoder(nn.Module):
    """Occupancy logits at query points, cross-attending to the decoded latent tokens."""

    def __init__(
        self,
        width: int,
        heads: int,
        num_freqs: int,
        include_pi: bool,
        qkv_bias: bool,
        qk_norm: bool,
        mlp_expand_ratio: int,
        ln_post: bool,
    ):
        super().__init__()
        self.fourier_embedder = FourierEmbedder(num_freqs, include_pi)
        self.query_proj = nn.Linear(self.fourier_embedder.out_dim, width)
        self.cross_attn_decoder = ResidualCrossAttentionBlock(width, heads, qkv_bias, qk_norm, mlp_expand_ratio)
        self.ln_post = nn.LayerNorm(width, eps=LN_POST_EPS) if ln_post else None
        self.output_proj = nn.Linear(width, 1)

    def latent_kv(self, latents: torch.Tensor) -> LatentKV:
        """Keys and values of the decoded latent tokens ``[B, N, width]`` (``[B, H, N, d]`` each).

        They do not depend on the query points: compute them once per request and pass them to
        :meth:`decode_kv` for every chunk of points.
        """
        return self.cross_attn_decoder.latent_kv(latents)

    def query_features(self, queries: torch.Tensor) -> torch.Tensor:
        """Fourier features of the points ``[B, P, 3]`` projected to the width (cast to the weights' dtype)."""
        return self.query_proj(self.fourier_embedder(queries.to(self.query_proj.weight.dtype)))

    def decode_kv(self, queries: torch.Tensor, kv: LatentKV, attention: AttentionFn | None = None) -> torch.Tensor:
        """Logits ``[B, P, 1]`` at the points ``[B, P, 3]`` from precomputed ``kv`` (see :meth:`latent_kv`).

        ``attention(q, k, v)`` replaces the dense attention (e.g. by a key/value-selecting one).
        """
        x = self.cross_attn_decoder.forward_kv(self.query_features(queries), kv, attention)
        if self.ln_post is not None:
            x = self.ln_post(x)
        return self.output_proj(x)

    def forward(self, queries: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """``queries`` ``[B, P, 3]`` (cast to the weights' dtype), ``latents`` ``[B, N, width]`` -> ``[B, P, 1]``."""
        return self.decode_kv(queries, self.latent_kv(latents))


class ShapeVAE(nn.Module):
    """Decoder of the official ``ShapeVAE``; constructor arguments are those of ``config.yaml``.

    Encoder-only arguments (``num_encoder_layers``, ``point_feats``, ``pc_size``,
    ``pc_sharpedge_size``) are accepted and ignored. ``volume_decoder`` and ``surface_extractor`` are
    attributes, as upstream, so ``pipe.vae.volume_decoder(...)`` works.
    """

    def __init__(
        self,
        num_latents: int = 4096,
        embed_dim: int = 64,
        width: int = 1024,
        heads: int = 16,
        num_decoder_layers: int = 16,
        num_freqs: int = 8,
        include_pi: bool = False,
        qkv_bias: bool = False,
        qk_norm: bool = True,
        scale_factor: float = 1.0039506158752403,
        geo_decoder_mlp_expand_ratio: int = 4,
        geo_decoder_downsample_ratio: int = 1,
        geo_decoder_ln_post: bool = True,
        num_encoder_layers: int = 8,
        point_feats: int = 4,
        pc_size: int = 81920,
        pc_sharpedge_size: int = 0,
    ):
        super().__init__()
        if geo_decoder_downsample_ratio != 1:
            raise ValueError(
                f"ShapeVAE: geo_decoder_downsample_ratio={geo_decoder_downsample_ratio} is not supported; only 1 "
                "(the hunyuan3d-dit-v2-1 configuration) is implemented"
            )
        if not scale_factor > 0:
            raise ValueError(f"ShapeVAE: scale_factor must be positive, got {scale_factor}")
        self.num_latents = num_latents
        self.embed_dim = embed_dim
        self.width = width
        self.scale_factor = float(scale_factor)
        self.post_kl = nn.Linear(embed_dim, width)
        self.transformer = Transformer(width, heads, num_decoder_layers, qkv_bias, qk_norm)
        self.geo_decoder = GeometryDecoder(
            width, heads, num_freqs, include_pi, qkv_bias, qk_norm, geo_decoder_mlp_expand_ratio, geo_decoder_ln_post
        )
        self.volume_decoder = VanillaVolumeDecoder()
        self.surface_extractor = MCSurfaceExtractor()

    @property
    def dtype(self) -> torch.dtype:
        return self.post_kl.weight.dtype

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """Decode scaled latents ``[B, N, embed_dim]`` into tokens ``[B, N, width]`` for the geometry decoder."""
        if latents.ndim != 3 or latents.shape[-1] != self.embed_dim:
            raise ValueError(f"ShapeVAE expects latents [B, N, {self.embed_dim}], got {list(latents.shape)}")
        return self.transformer(self.post_kl(latents.to(self.dtype)))

    decode = forward

    def latents2mesh(
        self,
        latents: torch.Tensor,
        bounds: float = 1.01,
        octree_resolution: int = 384,
        num_chunks: int = 8000,
        mc_level: float = 0.0,
    ) -> list[tuple | None]:
        """Decoded tokens -> logit grid (``self.volume_decoder``) -> meshes (``self.surface_extractor``)."""
        grid = self.volume_decoder(
            latents, self.geo_decoder, bounds=bounds, num_chunks=num_chunks, octree_resolution=octree_resolution
        )
        return self.surface_extractor(grid, mc_level, bounds, octree_resolution)
