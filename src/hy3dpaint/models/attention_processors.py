"""Attention processors of the UNet 2.5D (FACTS §7.2): material-aware self-attention, reference
attention, multiview attention with 3-D RoPE, and a cross-attention that projects a context shared
by many rows only once.

Each processor is an ``nn.Module`` attached to a diffusers ``Attention`` (so its own weights sit
under ``<attention>.processor.`` in the state dict, as upstream) and is called as
``attn.processor(attn, hidden_states, ...)``. All of them use scaled-dot-product attention with the
default scale ``1 / sqrt(head_dim)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention
from torch import nn

from hy3dpaint.models.voxel_rope import apply_rope

#: PBR materials generated together, in batch order. The first uses the attention's own weights.
MATERIALS: tuple[str, ...] = ("albedo", "mr")


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, L, heads * d] -> [B, heads, L, d]."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[B, heads, L, d] -> [B, L, heads * d]."""
    return x.transpose(1, 2).flatten(2)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head SDPA on [B, L, heads * d] projections."""
    out = F.scaled_dot_product_attention(_split_heads(q, heads), _split_heads(k, heads), _split_heads(v, heads))
    return _merge_heads(out).to(q.dtype)


def _output_projection(inner_dim: int, query_dim: int, out_bias: bool, dropout: float) -> nn.ModuleList:
    """``[Linear, Dropout]``, named like diffusers' ``Attention.to_out``."""
    return nn.ModuleList([nn.Linear(inner_dim, query_dim, bias=out_bias), nn.Dropout(dropout)])


def _project_out(to_out: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
    return to_out[1](to_out[0](x))


class MaterialSelfAttnProcessor(nn.Module):
    """Self-attention within each view, with separate q/k/v/out weights per material (MDA).

    The first material (albedo) uses the attention's ``to_q/to_k/to_v/to_out``; every further
    material ``m`` has ``to_q_m``, ``to_k_m``, ``to_v_m`` and ``to_out_m`` on this processor.
    Input rows are ordered (batch, material, view).
    """

    def __init__(self, query_dim: int, heads: int, dim_head: int, *, bias: bool = False, out_bias: bool = True,
                 dropout: float = 0.0, materials: tuple[str, ...] = MATERIALS):
        super().__init__()
        self.materials = materials
        inner_dim = heads * dim_head
        for material in materials[1:]:
            setattr(self, f"to_q_{material}", nn.Linear(query_dim, inner_dim, bias=bias))
            setattr(self, f"to_k_{material}", nn.Linear(query_dim, inner_dim, bias=bias))
            setattr(self, f"to_v_{material}", nn.Linear(query_dim, inner_dim, bias=bias))
            setattr(self, f"to_out_{material}", _output_projection(inner_dim, query_dim, out_bias, dropout))

    def _weights(self, attn: Attention, material_index: int) -> tuple[nn.Module, nn.Module, nn.Module, nn.ModuleList]:
        if material_index == 0:
            return attn.to_q, attn.to_k, attn.to_v, attn.to_out
        material = self.materials[material_index]
        return (getattr(self, f"to_q_{material}"), getattr(self, f"to_k_{material}"),
                getattr(self, f"to_v_{material}"), getattr(self, f"to_out_{material}"))

    def forward(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, *, num_views: int = 1) -> torch.Tensor:
        """``hidden_states`` [(B * materials * num_views), L, C] -> same shape."""
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ValueError("material self-attention takes neither encoder_hidden_states nor attention_mask")
        rows, tokens, channels = hidden_states.shape
        n_materials = len(self.materials)
        if rows % (n_materials * num_views):
            raise ValueError(f"{rows} rows are not a multiple of {n_materials} materials x {num_views} views")
        per_material = hidden_states.reshape(-1, n_materials, num_views, tokens, channels)
        outputs = []
        for index in range(n_materials):
            x = per_material[:, index].reshape(-1, tokens, channels)
            to_q, to_k, to_v, to_out = self._weights(attn, index)
            out = _project_out(to_out, _attend(to_q(x), to_k(x), to_v(x), attn.heads))
            outputs.append(out.reshape(-1, num_views, tokens, channels))
        return torch.stack(outputs, dim=1).reshape(rows, tokens, channels)


class ReferenceAttnProcessor(nn.Module):
    """Reference attention (RA): albedo queries attend to the reference stream's features.

    Queries and keys are shared by all materials (so the MR output is also driven by the albedo
    queries); value and output projections are per material: the attention's ``to_v/to_out``
    for albedo, ``to_v_m/to_out_m`` on this processor for every further material ``m``.

    Upstream quirk, reproduced: the materials' values are concatenated *before* the head split,
    so with H heads head h sees value channels ``[h*M*d, (h+1)*M*d)`` of the concatenation and
    material i's output takes the i-th ``d``-wide slice of every head. With one head each
    material attends to its own values; with several (every SD-2.1 layer), material i at head h
    reads head ``(h*M + i) % H`` of material ``(h*M + i) // H``'s values.
    """

    def __init__(self, query_dim: int, heads: int, dim_head: int, *, bias: bool = False, out_bias: bool = True,
                 dropout: float = 0.0, materials: tuple[str, ...] = MATERIALS):
        super().__init__()
        self.materials = materials
        inner_dim = heads * dim_head
        for material in materials[1:]:
            setattr(self, f"to_v_{material}", nn.Linear(query_dim, inner_dim, bias=bias))
            setattr(self, f"to_out_{material}", _output_projection(inner_dim, query_dim, out_bias, dropout))

    def forward(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Queries [B, Lq, C], reference features [B, Lr, C] -> [B, materials, Lq, C]."""
        if encoder_hidden_states is None:
            raise ValueError("reference attention needs the reference features as encoder_hidden_states")
        if attention_mask is not None:
            raise ValueError("reference attention takes no attention_mask")
        heads = attn.heads
        q = _split_heads(attn.to_q(hidden_states), heads)
        k = _split_heads(attn.to_k(encoder_hidden_states), heads)
        value_projections = [attn.to_v] + [getattr(self, f"to_v_{m}") for m in self.materials[1:]]
        # Values concatenated before the head split: the upstream head/material mixing (see above).
        values = torch.cat([project(encoder_hidden_states) for project in value_projections], dim=-1)
        attended = F.scaled_dot_product_attention(q, k, _split_heads(values, heads))
        head_dim = q.shape[-1]
        output_projections = [attn.to_out] + [getattr(self, f"to_out_{m}") for m in self.materials[1:]]
        outputs = [_project_out(to_out, _merge_heads(chunk).to(hidden_states.dtype))
                   for to_out, chunk in zip(output_projections, attended.split(head_dim, dim=-1))]
        return torch.stack(outputs, dim=1)


class MultiviewRoPEAttnProcessor(nn.Module):
    """Multiview attention (MA): self-attention over the tokens of all views of one material, with
    3-D RoPE from voxel indices applied to queries and keys when ``rope`` is given."""

    def forward(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, *,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """``hidden_states`` [B', N * L, C]; ``rope`` = (cos, sin) [B', N * L, head_dim] -> [B', N * L, C]."""
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ValueError("multiview attention takes neither encoder_hidden_states nor attention_mask")
        q = _split_heads(attn.to_q(hidden_states), attn.heads)
        k = _split_heads(attn.to_k(hidden_states), attn.heads)
        v = _split_heads(attn.to_v(hidden_states), attn.heads)
        if rope is not None:
            cos, sin = (table.unsqueeze(1) for table in rope)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        out = _merge_heads(F.scaled_dot_product_attention(q, k, v)).to(hidden_states.dtype)
        return _project_out(attn.to_out, out)


class SharedContextCrossAttnProcessor(nn.Module):
    """Cross-attention whose context [B, S, Cc] is shared by ``repeats`` consecutive query rows.

    Keys and values are projected once per context and then repeated, which gives the same
    numbers as projecting a repeated context, at a fraction of the cost (the DINO tokens are
    shared by every view and material).
    """

    def forward(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, *, repeats: int = 1) -> torch.Tensor:
        """Queries [B * repeats, L, C], context [B, S, Cc] -> [B * repeats, L, C]."""
        if encoder_hidden_states is None:
            raise ValueError("cross-attention needs encoder_hidden_states")
        if attention_mask is not None:
            raise ValueError("this cross-attention takes no attention_mask")
        if hidden_states.shape[0] != encoder_hidden_states.shape[0] * repeats:
            raise ValueError(f"{hidden_states.shape[0]} query rows do not match "
                             f"{encoder_hidden_states.shape[0]} contexts x {repeats} repeats")
        q = _split_heads(attn.to_q(hidden_states), attn.heads)
        k = _split_heads(attn.to_k(encoder_hidden_states), attn.heads).repeat_interleave(repeats, dim=0)
        v = _split_heads(attn.to_v(encoder_hidden_states), attn.heads).repeat_interleave(repeats, dim=0)
        out = _merge_heads(F.scaled_dot_product_attention(q, k, v)).to(hidden_states.dtype)
        return _project_out(attn.to_out, out)
