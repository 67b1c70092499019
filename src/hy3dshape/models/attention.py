"""Attention layers of the DiT denoiser (FACTS §4).

Both attentions split their projections *per head* out of the concatenated outputs, which is not
what the parameter names suggest:

* self-attention: ``[to_q(x), to_k(x), to_v(x)]`` (3 x hidden values per token) is viewed as
  ``heads x (3 * head_dim)`` and each head's slice is split into q, k, v;
* cross-attention: q is ``to_q(x)`` split per head as usual, and ``[to_k(c), to_v(c)]`` is viewed as
  ``heads x (2 * head_dim)`` and each head's slice is split into k, v.

q and k get an RMSNorm over the head dimension; attention is ``scaled_dot_product_attention``
(flash / memory-efficient kernels on CUDA, scale ``1 / sqrt(head_dim)``).

``fuse_projections()`` (called once after loading) stores the concatenated projection weights in one
tensor and turns ``to_q``/``to_k``/``to_v`` into views of it: one matmul per attention with no per-call
concatenation and no extra memory, while the state-dict keys and values stay those of the checkpoint.
The fused path is used for inference (no autograd); with gradients enabled the weights are
concatenated per call, so training sees the ordinary parameters.
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


class _FusedProjections(nn.Module):
    """Base of the attentions whose ``fused_names`` Linear layers are applied to the same input."""

    fused_names: tuple[str, ...] = ()

    def __init__(self):
        super().__init__()
        self._fused_weight: torch.Tensor | None = None
        self._fused_bias: torch.Tensor | None = None
        self._fuse_requested = False
        self.register_load_state_dict_post_hook(lambda module, _incompatible: module._refuse())

    def fuse_projections(self) -> None:
        """Store the projections of ``fused_names`` as views of one concatenated weight (see the module
        docstring). Idempotent; kept across ``.to()`` and ``load_state_dict``."""
        layers = [getattr(self, name) for name in self.fused_names]
        with torch.inference_mode(False), torch.no_grad():
            weight = torch.cat([layer.weight.detach() for layer in layers])
            bias = None if layers[0].bias is None else torch.cat([layer.bias.detach() for layer in layers])
        start = 0
        for layer in layers:
            stop = start + layer.weight.shape[0]
            layer.weight = nn.Parameter(weight[start:stop], requires_grad=layer.weight.requires_grad)
            if bias is not None:
                layer.bias = nn.Parameter(bias[start:stop], requires_grad=layer.bias.requires_grad)
            start = stop
        self._fused_weight, self._fused_bias, self._fuse_requested = weight, bias, True

    @property
    def is_fused(self) -> bool:
        """Whether the projections currently share one fused weight."""
        if self._fused_weight is None:
            return False
        first = getattr(self, self.fused_names[0]).weight
        return first.data_ptr() == self._fused_weight.data_ptr() and first.dtype == self._fused_weight.dtype

    def _refuse(self) -> None:
        if self._fuse_requested and not self.is_fused:
            self.fuse_projections()

    def _apply(self, fn, recurse=True):
        result = super()._apply(fn, recurse)
        self._refuse()  # .to() / .half() replace every parameter: fuse the new ones again
        return result

    def _projection(self, x: torch.Tensor) -> torch.Tensor:
        """``[layer(x) for layer in fused_names]`` concatenated along the last axis, as one matmul."""
        if self._fused_weight is not None and not torch.is_grad_enabled():
            return F.linear(x, self._fused_weight, self._fused_bias)
        layers = [getattr(self, name) for name in self.fused_names]
        weight = torch.cat([layer.weight for layer in layers])
        bias = None if layers[0].bias is None else torch.cat([layer.bias for layer in layers])
        return F.linear(x, weight, bias)


class SelfAttention(_FusedProjections):
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

    fused_names = ("to_q", "to_k", "to_v")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        qkv = self._projection(x).view(batch, tokens, self.num_heads, 3 * self.head_dim)
        query, key, value = qkv.split(self.head_dim, dim=-1)
        return self.out_proj(_attend(self.q_norm(query), self.k_norm(key), value))


class CrossAttention(_FusedProjections):
    """DiT cross-attention to the image tokens, with the per-head interleaved k/v layout."""

    fused_names = ("to_k", "to_v")

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
        kv = self._projection(context).view(batch, context.shape[1], self.num_heads, 2 * self.head_dim)
        key, value = kv.split(self.head_dim, dim=-1)
        return self.out_proj(_attend(self.q_norm(query), self.k_norm(key), value))
