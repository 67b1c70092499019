"""Mixture-of-experts feed-forward of the last DiT blocks (FACTS §4).

A bias-free gate gives softmax probabilities over the experts for every token (the time token
included); the ``top_k`` largest are kept and used *as they are* (not renormalised) to mix the chosen
experts' outputs, and a shared expert is added for every token. No capacity limit, no token dropping.
The same computation runs in train and eval mode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GELUProjection(nn.Module):
    """Linear layer followed by exact (erf) GELU; parameters under ``proj``."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x))


class FeedForward(nn.Module):
    """``net.0.proj`` (dim -> inner, GELU) then ``net.2`` (inner -> dim), the layout of diffusers' FeedForward."""

    def __init__(self, dim: int, inner_dim: int):
        super().__init__()
        self.net = nn.ModuleList([GELUProjection(dim, inner_dim), nn.Identity(), nn.Linear(inner_dim, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class MoEBlock(nn.Module):
    """Top-k routed experts plus an always-on shared expert."""

    def __init__(self, dim: int, num_experts: int = 8, top_k: int = 2, ff_inner_dim: int | None = None):
        super().__init__()
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"MoE: top_k must be in [1, num_experts={num_experts}], got {top_k}")
        inner = ff_inner_dim or 4 * dim
        self.num_experts = num_experts
        self.top_k = top_k
        self.experts = nn.ModuleList(FeedForward(dim, inner) for _ in range(num_experts))
        self.gate = nn.Linear(dim, num_experts, bias=False)
        self.shared_experts = FeedForward(dim, inner)

    def route(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``tokens`` ``[T, dim]`` -> ``(expert indices [T, top_k], weights [T, top_k])``.

        Weights are the raw softmax probabilities of the chosen experts (float32 softmax, cast to the
        tokens' dtype); within a token the experts are listed by decreasing probability.
        """
        probabilities = self.gate(tokens).float().softmax(dim=-1)
        weights, indices = probabilities.topk(self.top_k, dim=-1)
        return indices, weights.to(tokens.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        tokens = x.reshape(-1, shape[-1])
        indices, weights = self.route(tokens)
        routed = torch.zeros_like(tokens)
        for expert_id, expert in enumerate(self.experts):
            token_ids, slot = (indices == expert_id).nonzero(as_tuple=True)
            if token_ids.numel() == 0:
                continue
            contribution = expert(tokens[token_ids]) * weights[token_ids, slot, None]
            routed.index_add_(0, token_ids, contribution)
        return (routed + self.shared_experts(tokens)).reshape(shape)
