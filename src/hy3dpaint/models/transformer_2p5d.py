"""``Basic2p5DTransformerBlock``: a diffusers ``BasicTransformerBlock`` extended with the 2.5D
attentions of Hunyuan3D-Paint (FACTS §7.2).

The original block sits under ``.transformer`` (so its weights keep their names behind that
prefix); the new attentions are its siblings: ``attn_multiview`` (MA), ``attn_refview`` (RA) and
``attn_dino``. Material-aware self-attention (MDA) replaces the processor of ``transformer.attn1``.

Per-call data (number of views, reference features, RoPE tables, DINO tokens, scales) travels in a
``Block2p5DContext`` under ``cross_attention_kwargs[CONTEXT_KEY]``, the one channel diffusers'
``UNet2DConditionModel`` forwards to its transformer blocks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.attention_processor import Attention
from torch import nn

from hy3dpaint.models.attention_processors import (
    MATERIALS,
    MaterialSelfAttnProcessor,
    MultiviewRoPEAttnProcessor,
    ReferenceAttnProcessor,
    SharedContextCrossAttnProcessor,
)
from hy3dpaint.models.voxel_rope import VoxelIndexLevel, rope_tables

#: Key of the ``Block2p5DContext`` inside ``cross_attention_kwargs``.
CONTEXT_KEY = "hy3dpaint_2p5d"


@dataclass
class Block2p5DContext:
    """What every wrapped block needs for one UNet call.

    ``write_reference=True`` is the reference stream: each block stores its post-norm1 tokens in
    ``reference_features[layer_name]`` as [B, num_views * L, C] and runs as a plain block.
    Otherwise the blocks read ``reference_features`` (RA), ``voxel_levels`` (RoPE for MA) and
    ``dino_tokens`` [B, S, C] when present; a missing one switches that attention off.
    """

    num_views: int
    write_reference: bool = False
    num_materials: int = len(MATERIALS)
    reference_features: dict[str, torch.Tensor] | None = None
    ref_scale: torch.Tensor | float = 1.0
    mva_scale: float = 1.0
    dino_tokens: torch.Tensor | None = None
    voxel_levels: dict[int, VoxelIndexLevel] | None = None
    rope_cache: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    def rope(self, sequence_length: int, head_dim: int, batch_rows: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """cos/sin [batch_rows, sequence_length, head_dim] for an MA layer, or None when no grid
        has this many tokens. Rows are (batch, material); the indices are shared by materials."""
        if not self.voxel_levels or sequence_length not in self.voxel_levels:
            return None
        key = (sequence_length, head_dim)
        if key not in self.rope_cache:
            self.rope_cache[key] = rope_tables(self.voxel_levels[sequence_length], head_dim)
        cos, sin = self.rope_cache[key]
        if cos.shape[0] * self.num_materials == batch_rows:
            return cos.repeat_interleave(self.num_materials, dim=0), sin.repeat_interleave(self.num_materials, dim=0)
        if cos.shape[0] == 1:
            return cos.expand(batch_rows, -1, -1), sin.expand(batch_rows, -1, -1)
        raise ValueError(f"voxel indices have batch {cos.shape[0]}, which does not fit {batch_rows} "
                         f"multiview rows of {self.num_materials} materials")


class Basic2p5DTransformerBlock(nn.Module):
    """Wraps ``transformer`` (a ``BasicTransformerBlock``) with MDA, RA, MA and DINO attention.

    ``layer_name`` keys this block's reference features (``down_i_j_k``, ``mid_j_k``, ``up_i_j_k``).
    With every ``use_*`` flag false (the reference stream) the block adds no weights and only
    records its features. Inference only: the training-time initialisation of the new attentions
    (copies of attn1/attn2 with zeroed outputs) is not reproduced; checkpoints hold trained values.
    """

    def __init__(self, transformer: BasicTransformerBlock, layer_name: str, *, use_mda: bool = True,
                 use_ra: bool = True, use_ma: bool = True, use_dino: bool = True,
                 materials: tuple[str, ...] = MATERIALS):
        super().__init__()
        if transformer.norm_type != "layer_norm" or transformer.attn2 is None or transformer.only_cross_attention:
            raise ValueError(f"{layer_name}: only layer-norm blocks with self- and cross-attention can be wrapped")
        self.transformer = transformer
        self.layer_name = layer_name
        self.materials = materials
        self.use_mda, self.use_ra, self.use_ma, self.use_dino = use_mda, use_ra, use_ma, use_dino
        attn1, attn2 = transformer.attn1, transformer.attn2
        dims = dict(heads=attn1.heads, dim_head=attn1.inner_dim // attn1.heads)
        common = dict(query_dim=transformer.dim, dropout=transformer.dropout, bias=transformer.attention_bias,
                      upcast_attention=attn1.upcast_attention, out_bias=True, **dims)
        if use_mda:
            attn1.set_processor(MaterialSelfAttnProcessor(
                transformer.dim, bias=transformer.attention_bias, dropout=transformer.dropout, materials=materials,
                **dims))
        if use_ma:
            self.attn_multiview = Attention(cross_attention_dim=None, processor=MultiviewRoPEAttnProcessor(), **common)
        if use_ra:
            self.attn_refview = Attention(cross_attention_dim=None, processor=ReferenceAttnProcessor(
                transformer.dim, bias=transformer.attention_bias, dropout=transformer.dropout, materials=materials,
                **dims), **common)
        if use_dino:
            common["upcast_attention"] = attn2.upcast_attention
            self.attn_dino = Attention(cross_attention_dim=transformer.cross_attention_dim,
                                       processor=SharedContextCrossAttnProcessor(), **common)

    @property
    def head_dim(self) -> int:
        attn1 = self.transformer.attn1
        return attn1.inner_dim // attn1.heads

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                encoder_hidden_states: torch.Tensor | None = None,
                encoder_attention_mask: torch.Tensor | None = None, timestep: torch.Tensor | None = None,
                cross_attention_kwargs: dict[str, Any] | None = None, class_labels: torch.Tensor | None = None,
                added_cond_kwargs: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Same call as ``BasicTransformerBlock``; the 2.5D data comes in ``cross_attention_kwargs``."""
        context = (cross_attention_kwargs or {}).get(CONTEXT_KEY)
        if not isinstance(context, Block2p5DContext):
            raise ValueError(f"{self.layer_name}: cross_attention_kwargs[{CONTEXT_KEY!r}] must hold a Block2p5DContext")
        if attention_mask is not None or encoder_attention_mask is not None:
            raise ValueError(f"{self.layer_name}: attention masks are not supported")
        block = self.transformer
        rows, tokens, channels = hidden_states.shape
        norm_hidden_states = block.norm1(hidden_states)

        # Self-attention: per material (MDA) in the main stream, plain in the reference stream.
        if self.use_mda and not context.write_reference:
            attn_output = block.attn1.processor(block.attn1, norm_hidden_states, num_views=context.num_views)
        else:
            attn_output = block.attn1(norm_hidden_states)
        hidden_states = attn_output + hidden_states

        if context.write_reference:
            if context.reference_features is None:
                raise ValueError("the reference stream needs a reference_features dict to write to")
            context.reference_features[self.layer_name] = norm_hidden_states.reshape(
                -1, context.num_views * tokens, channels)
        else:
            hidden_states = self._reference_and_multiview(hidden_states, norm_hidden_states, context)

        # Text cross-attention, then DINO cross-attention on the same normalised tokens.
        norm_hidden_states = block.norm2(hidden_states)
        hidden_states = block.attn2(norm_hidden_states, encoder_hidden_states=encoder_hidden_states) + hidden_states
        if self.use_dino and context.dino_tokens is not None and not context.write_reference:
            dino = context.dino_tokens
            attn_output = self.attn_dino.processor(self.attn_dino, norm_hidden_states, encoder_hidden_states=dino,
                                                   repeats=rows // dino.shape[0])
            hidden_states = attn_output + hidden_states

        hidden_states = block.ff(block.norm3(hidden_states)) + hidden_states
        return hidden_states

    def _reference_and_multiview(self, hidden_states: torch.Tensor, norm_hidden_states: torch.Tensor,
                                 context: Block2p5DContext) -> torch.Tensor:
        """RA then MA, both on the post-norm1 tokens (h is not normalised again in between)."""
        rows, tokens, channels = hidden_states.shape
        n_materials, n_views = context.num_materials, context.num_views
        batch = rows // (n_materials * n_views)
        if self.use_ra and context.reference_features is not None:
            reference = context.reference_features[self.layer_name]
            if reference.shape[0] != batch:
                if reference.shape[0] != 1:
                    raise ValueError(f"{self.layer_name}: reference features have batch {reference.shape[0]}, "
                                     f"expected 1 or {batch}")
                reference = reference.expand(batch, -1, -1)
            albedo_queries = norm_hidden_states.reshape(batch, n_materials, n_views * tokens, channels)[:, 0]
            attn_output = self.attn_refview.processor(self.attn_refview, albedo_queries,
                                                      encoder_hidden_states=reference)
            ref_scale = context.ref_scale
            if isinstance(ref_scale, torch.Tensor):
                ref_scale = ref_scale.to(attn_output.dtype).reshape(-1, 1, 1, 1)
            hidden_states = (ref_scale * attn_output).reshape(rows, tokens, channels) + hidden_states
        if self.use_ma:
            multiview_tokens = norm_hidden_states.reshape(batch * n_materials, n_views * tokens, channels)
            rope = context.rope(n_views * tokens, self.head_dim, batch * n_materials)
            attn_output = self.attn_multiview.processor(self.attn_multiview, multiview_tokens, rope=rope)
            hidden_states = context.mva_scale * attn_output.reshape(rows, tokens, channels) + hidden_states
        return hidden_states
