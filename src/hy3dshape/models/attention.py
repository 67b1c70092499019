"""Attention layers of the DiT denoiser (FACTS §4).

Both attentions split their projections *per head* out of the concatenated outputs, which is not
what the parameter names suggest:

* self-attention: ``[to_q(x), to_k(x), to_v(x)]`` (3 x hidden values per token) is viewed as
  ``heads x (3 * head_dim)`` and each head's slice is split into q, k, v;
* cross-attention: q is ``to_q(x)`` split per head as usual, and ``[to_k(c), to_v(c)]`` is viewed as
  ``heads x (2 * head_dim)`` and each head's slice is split into k, v.

q and k get an RMSNorm over the head dimension; attention is ``scaled_dot_product_attention``
(flash / memory-efficient kernels on CUDA, scale ``1 / sqrt(head_dim)``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Epsilon of every DiT normalisation layer (LayerNorm and RMSNorm).
NORM_EPS = 1e-6


class RMSNorm(nn.Module):
    """RMSNorm over the last dimension with a learned ``weight``; computed in float32, cast back."""

    def __init__(self, dim: int, eps: float = NORM_EPS):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return normed.to(x.dtype) * self.weight


def _qk_norm(enabled: bool, head_dim: int) -> nn.Module:
    return RMSNorm(head_dim) if enabled else nn.Identity()


def _attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """``[B, N, H, d]`` q and ``[B, M, H, d]`` k/v -> ``[B, N, H * d]``."""
    batch, tokens = query.shape[:2]
    context = F.scaled_dot_product_attention(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2))
    return context.transpose(1, 2).reshape(batch, tokens, -1)


class SelfAttention(nn.Module):
    """DiT self-attention with the per-head interleaved q/k/v layout (see the module docstring)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = False, qk_norm: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"self-attention: hidden size {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.to_q = nn.Linear(dim, dim, bias=qkv_bias)
        self.to_k = nn.Linear(dim, dim, bias=qkv_bias)
        self.to_v = nn.Linear(dim, dim, bias=qkv_bias)
        self.q_norm = _qk_norm(qk_norm, self.head_dim)
        self.k_norm = _qk_norm(qk_norm, self.head_dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        weight = torch.cat((self.to_q.weight, self.to_k.weight, self.to_v.weight))
        bias = None
        if self.to_q.bias is not None:
            bias = torch.cat((self.to_q.bias, self.to_k.bias, self.to_v.bias))
        qkv = F.linear(x, weight, bias).view(batch, tokens, self.num_heads, 3 * self.head_dim)
        query, key, value = qkv.split(self.head_dim, dim=-1)
        return self.out_proj(_attend(self.q_norm(query), self.k_norm(key), value))


class CrossAttention(nn.Module):
    """DiT cross-attention to the image tokens, with the per-head interleaved k/v layout."""

    def __init__(self, dim: int, context_dim: int, num_heads: int, qkv_bias: bool = False, qk_norm: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"cross-attention: hidden size {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.to_q = nn.Linear(dim, dim, bias=qkv_bias)
        self.to_k = nn.Linear(context_dim, dim, bias=qkv_bias)
        self.to_v = nn.Linear(context_dim, dim, bias=qkv_bias)
        self.q_norm = _qk_norm(qk_norm, self.head_dim)
        self.k_norm = _qk_norm(qk_norm, self.head_dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        query = self.to_q(x).view(batch, tokens, self.num_heads, self.head_dim)
        weight = torch.cat((self.to_k.weight, self.to_v.weight))
        bias = None
        if self.to_k.bias is not None:
            bias = torch.cat((self.to_k.bias, self.to_v.bias))
        kv = F.linear(context, weight, bias).view(batch, context.shape[1], self.num_heads, 2 * self.head_dim)
        key, value = kv.split(self.head_dim, dim=-1)
        return self.out_proj(_attend(self.q_norm(query), self.k_norm(key), value))
