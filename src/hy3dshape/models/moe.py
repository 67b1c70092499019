"""Mixture-of-experts feed-forward of the last DiT blocks (FACTS §4).

A bias-free gate gives softmax probabilities over the experts for every token (the time token
included); the ``top_k`` largest are kept and used *as they are* (not renormalised) to mix the chosen
experts' outputs, and a shared expert is added for every token. No capacity limit, no token dropping.
The same computation runs in train and eval mode.

Dispatch has no host synchronisation (no per-expert ``.nonzero()``), so a denoising step can be
captured as a CUDA graph: the ``tokens x top_k`` assignments are sorted by expert and every expert
layer runs as one grouped matmul over the sorted rows (``torch.nn.functional.grouped_mm`` with device
offsets from ``searchsorted``), then the weighted rows are added back with ``index_add_``. torch's grouped
matmul takes bfloat16 on CUDA and under ``torch.compile`` (any dtype in eager CPU mode); elsewhere
(float16 on CUDA) the ``dense`` dispatch computes every expert on every token and weights the outputs by
the sparse routing weights: the same result, also sync-free, at ``num_experts / top_k`` times the routed
expert FLOPs. ``dispatch="loop"`` is upstream's per-expert ``.nonzero()`` loop (benchmark baseline).
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

#: MoE dispatch used for inference (see the module docstring).
DISPATCH_MODES = ("grouped", "dense", "loop")
DEFAULT_DISPATCH = "grouped" if hasattr(F, "grouped_mm") else "dense"


def grouped_mm_supported(tensor: torch.Tensor) -> bool:
    """Whether ``F.grouped_mm`` can run on ``tensor``'s dtype and device: bfloat16 everywhere, other
    dtypes only in eager mode on the CPU (torch's CUDA kernels and its compile-time shape functions take
    bfloat16 only). Elsewhere the MoE uses the ``dense`` dispatch, also free of host synchronisation."""
    if not hasattr(F, "grouped_mm"):
        return False
    if tensor.dtype == torch.bfloat16:
        return True
    return tensor.device.type == "cpu" and not torch.compiler.is_compiling()


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
        #: ``"grouped"`` (sorted rows, grouped matmuls), ``"dense"`` (all experts, sparse weights) or
        #: ``"loop"`` (upstream's per-expert ``.nonzero()`` loop; synchronises with the host).
        self.dispatch = DEFAULT_DISPATCH
        self._stacked: tuple[torch.Tensor, ...] | None = None
        self._stack_requested = False
        self.register_load_state_dict_post_hook(lambda module, _incompatible: module._restack())

    def route(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``tokens`` ``[T, dim]`` -> ``(expert indices [T, top_k], weights [T, top_k])``.

        Weights are the raw softmax probabilities of the chosen experts (float32 softmax, cast to the
        tokens' dtype); within a token the experts are listed by decreasing probability.
        """
        probabilities = self.gate(tokens).float().softmax(dim=-1)
        weights, indices = probabilities.topk(self.top_k, dim=-1)
        return indices, weights.to(tokens.dtype)

    def stack_experts(self) -> None:
        """Store the routed experts' weights as views of four stacked tensors (``[E, out, in]`` weights,
        ``[E, out]`` biases), so that grouped matmuls read them without a copy. Called once after loading;
        kept across ``.to()`` and ``load_state_dict``; the state-dict keys are unchanged."""
        layers = ([expert.net[0].proj for expert in self.experts], [expert.net[2] for expert in self.experts])
        stacked = []
        with torch.inference_mode(False), torch.no_grad():
            for group in layers:
                weight = torch.stack([layer.weight.detach() for layer in group])
                bias = torch.stack([layer.bias.detach() for layer in group])
                for index, layer in enumerate(group):
                    layer.weight = nn.Parameter(weight[index], requires_grad=layer.weight.requires_grad)
                    layer.bias = nn.Parameter(bias[index], requires_grad=layer.bias.requires_grad)
                stacked += [weight, bias]
        self._stacked, self._stack_requested = tuple(stacked), True

    @property
    def is_stacked(self) -> bool:
        """Whether the experts' parameters currently are views of the stacked tensors."""
        if self._stacked is None:
            return False
        weight = self.experts[0].net[0].proj.weight
        return weight.data_ptr() == self._stacked[0].data_ptr() and weight.dtype == self._stacked[0].dtype

    def _restack(self) -> None:
        if self._stack_requested and not self.is_stacked:
            self.stack_experts()

    def _apply(self, fn, recurse=True):
        result = super()._apply(fn, recurse)
        self._restack()
        return result

    def stacked_expert_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(w1 [E, inner, dim], b1 [E, inner], w2 [E, dim, inner], b2 [E, dim])`` of the routed experts:
        the stacked tensors after ``stack_experts()``, else stacked copies made for this call."""
        if self._stacked is not None:
            return self._stacked
        first = [expert.net[0].proj for expert in self.experts]
        second = [expert.net[2] for expert in self.experts]
        return (torch.stack([layer.weight for layer in first]), torch.stack([layer.bias for layer in first]),
                torch.stack([layer.weight for layer in second]), torch.stack([layer.bias for layer in second]))

    def _routed_grouped(self, tokens: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        w1, b1, w2, b2 = self.stacked_expert_weights()
        expert_of_row = indices.reshape(-1)
        order = expert_of_row.argsort(stable=True)
        token_of_row = order.div(self.top_k, rounding_mode="floor")
        expert_sorted = expert_of_row[order]
        # End row of every expert's group; searchsorted keeps the shape static (bincount would not).
        experts = torch.arange(self.num_experts, device=tokens.device, dtype=expert_sorted.dtype)
        offsets = torch.searchsorted(expert_sorted, experts, right=True).to(torch.int32)
        hidden = F.grouped_mm(tokens[token_of_row], w1.transpose(-2, -1), offs=offsets) + b1[expert_sorted]
        out = F.grouped_mm(F.gelu(hidden), w2.transpose(-2, -1), offs=offsets) + b2[expert_sorted]
        out = out * weights.reshape(-1)[order, None]
        return torch.zeros_like(tokens).index_add_(0, token_of_row, out)

    def _routed_dense(self, tokens: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        w1, b1, w2, b2 = self.stacked_expert_weights()
        mixing = torch.zeros(tokens.shape[0], self.num_experts, dtype=tokens.dtype, device=tokens.device)
        mixing.scatter_(1, indices, weights)  # [T, E], top_k non-zeros per row
        hidden = F.gelu(torch.baddbmm(b1[:, None], tokens.expand(self.num_experts, -1, -1), w1.transpose(1, 2)))
        out = torch.baddbmm(b2[:, None], hidden, w2.transpose(1, 2))  # [E, T, dim]
        return torch.einsum("etd,te->td", out, mixing)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        tokens = x.reshape(-1, shape[-1])
        indices, weights = self.route(tokens)
        if torch.is_grad_enabled():
            routed = self._routed_reference(tokens, indices, weights)
        elif self.dispatch == "loop":
            routed = self._routed_reference(tokens, indices, weights)
        elif self.dispatch not in DISPATCH_MODES:
            raise ValueError(f"MoE dispatch must be one of {list(DISPATCH_MODES)}, got {self.dispatch!r}")
        elif self.dispatch == "grouped" and grouped_mm_supported(tokens):
            try:
                routed = self._routed_grouped(tokens, indices, weights)
            except (RuntimeError, NotImplementedError) as error:  # e.g. no grouped kernel for this dtype/GPU
                logger.warning("MoE grouped matmul unavailable on %s %s (%s); using dense dispatch",
                               tokens.device, tokens.dtype, error)
                self.dispatch = "dense"
                routed = self._routed_dense(tokens, indices, weights)
        else:
            routed = self._routed_dense(tokens, indices, weights)
        return (routed + self.shared_experts(tokens)).reshape(shape)

    def _routed_reference(self, tokens: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Per-expert loop on the parameters themselves (used with autograd; synchronises with the host)."""
        routed = torch.zeros_like(tokens)
        for expert_id, expert in enumerate(self.experts):
            token_ids, slot = (indices == expert_id).nonzero(as_tuple=True)
            contribution = expert(tokens[token_ids]) * weights[token_ids, slot, None]
            routed = routed.index_add(0, token_ids, contribution)
        return routed
