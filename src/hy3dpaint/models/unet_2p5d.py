"""``UNet2p5DConditionModel``: the multiview PBR denoiser of Hunyuan3D-Paint 2.1 (FACTS §7.2-7.4).

Two diffusers ``UNet2DConditionModel`` networks:

* ``unet``, the generator: a 12-channel ``conv_in`` ([noisy | normal | position] latents), every
  transformer block wrapped in ``Basic2p5DTransformerBlock`` (MDA, RA, MA with RoPE, DINO),
  the learned text tokens ``learned_text_clip_{albedo,mr,ref}`` and the DINO projector
  ``image_proj_model_dino``;
* ``unet_dual``, the reference stream: a plain copy with a 4-channel ``conv_in`` whose blocks only
  record their features, run once per generation on the clean reference latents at timestep 0.

State-dict keys are exactly those of ``hunyuan3d-paintpbr-v2-1/unet/diffusion_pytorch_model.bin``.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput
from torch import nn

from hy3dcore.loading import WeightsError, assign_state_dict, find_weights, load_weights, read_json
from hy3dpaint.models.attention_processors import MATERIALS
from hy3dpaint.models.transformer_2p5d import CONTEXT_KEY, Basic2p5DTransformerBlock, Block2p5DContext
from hy3dpaint.models.voxel_rope import VoxelIndexLevel, multires_voxel_indices

logger = logging.getLogger(__name__)

#: Latent channels of one input: [noisy | normal | position] are concatenated for ``conv_in``.
LATENT_CHANNELS = 4
CONV_IN_CHANNELS = 3 * LATENT_CHANNELS
#: Learned text tokens: count and width (upstream hard-codes SD-2.1's CLIP-H width).
TEXT_TOKENS = 77
TEXT_WIDTH = 1024
#: DINOv2-giant token width, and how many context tokens each DINO token becomes.
DINO_WIDTH = 1536
DINO_TOKENS_PER_INPUT_TOKEN = 4
#: Timestep of the reference stream.
REFERENCE_TIMESTEP = 0
#: Names of the cache entries (kept from upstream): filled by the first call of a generation.
CACHE_REFERENCE_FEATURES = "condition_embed_dict"
CACHE_DINO_TOKENS = "dino_hidden_states_proj"
CACHE_VOXEL_INDICES = "position_voxel_indices"
CACHE_ROPE_TABLES = "rope_tables"


class DinoTokenProjector(nn.Module):
    """``image_proj_model_dino``: Linear(1536 -> 4 * 1024), each token split into 4 tokens, LayerNorm.

    [B, T, 1536] -> [B, 4 T, 1024], token-major (the 4 tokens of input token 0 come first).
    """

    def __init__(self, input_dim: int = DINO_WIDTH, output_dim: int = TEXT_WIDTH,
                 tokens_per_input: int = DINO_TOKENS_PER_INPUT_TOKEN):
        super().__init__()
        self.output_dim = output_dim
        self.proj = nn.Linear(input_dim, tokens_per_input * output_dim)
        self.norm = nn.LayerNorm(output_dim)

    def forward(self, dino_hidden_states: torch.Tensor) -> torch.Tensor:
        """Project DINO states [B, T, 1536] to context tokens [B, 4 T, 1024]."""
        projected = self.proj(dino_hidden_states)
        return self.norm(projected.reshape(projected.shape[0], -1, self.output_dim))


def _transformer_block_slots(unet: UNet2DConditionModel) -> list[tuple[str, nn.ModuleList, int]]:
    """(layer name, owning ModuleList, index) of every transformer block, in forward order."""
    slots = []
    for prefix, blocks in (("down", unet.down_blocks), ("up", unet.up_blocks)):
        for block_index, block in enumerate(blocks):
            for attention_index, transformer in enumerate(getattr(block, "attentions", [])):
                for k in range(len(transformer.transformer_blocks)):
                    slots.append((f"{prefix}_{block_index}_{attention_index}_{k}", transformer.transformer_blocks, k))
    for attention_index, transformer in enumerate(getattr(unet.mid_block, "attentions", [])):
        for k in range(len(transformer.transformer_blocks)):
            slots.append((f"mid_{attention_index}_{k}", transformer.transformer_blocks, k))
    return slots


def _wrap_transformer_blocks(unet: UNet2DConditionModel, **flags: bool) -> None:
    for layer_name, owner, index in _transformer_block_slots(unet):
        block = owner[index]
        if not isinstance(block, BasicTransformerBlock):
            raise ValueError(f"{layer_name}: expected a BasicTransformerBlock, got {type(block).__name__}")
        owner[index] = Basic2p5DTransformerBlock(block, layer_name, **flags)


class UNet2p5DConditionModel(nn.Module):
    """The UNet 2.5D: generator ``unet`` and reference stream ``unet_dual`` (see the module doc).

    Build with ``from_config(config)`` (``config`` as in ``unet/config.json``, an SD-2.1
    ``UNet2DConditionModel`` config) or load with ``from_pretrained(<folder>/unet)``.
    """

    def __init__(self, unet: UNet2DConditionModel):
        super().__init__()
        if unet.config.cross_attention_dim != TEXT_WIDTH:
            raise ValueError(f"cross_attention_dim must be {TEXT_WIDTH} (the learned text and DINO tokens are "
                             f"{TEXT_WIDTH} wide), got {unet.config.cross_attention_dim}")
        if unet.config.in_channels != LATENT_CHANNELS or unet.config.out_channels != LATENT_CHANNELS:
            raise ValueError(f"in_channels and out_channels must be {LATENT_CHANNELS} in the config")
        unet_dual = copy.deepcopy(unet)
        device, dtype = unet.conv_in.weight.device, unet.conv_in.weight.dtype
        old_conv_in = unet.conv_in
        unet.conv_in = nn.Conv2d(CONV_IN_CHANNELS, old_conv_in.out_channels, kernel_size=old_conv_in.kernel_size,
                                 padding=old_conv_in.padding, device=device, dtype=dtype)
        for material in (*MATERIALS, "ref"):
            setattr(unet, f"learned_text_clip_{material}",
                    nn.Parameter(torch.zeros(TEXT_TOKENS, TEXT_WIDTH, device=device, dtype=dtype)))
        unet.image_proj_model_dino = DinoTokenProjector().to(device=device, dtype=dtype)
        _wrap_transformer_blocks(unet)
        _wrap_transformer_blocks(unet_dual, use_mda=False, use_ra=False, use_ma=False, use_dino=False)
        self.unet = unet
        self.unet_dual = unet_dual

    # ------------------------------------------------------------------------------------------
    # Construction and loading
    # ------------------------------------------------------------------------------------------

    @classmethod
    def from_config(cls, config: dict[str, Any], device: torch.device | str | None = None) -> UNet2p5DConditionModel:
        """Build from an SD ``UNet2DConditionModel`` config; ``device="meta"`` allocates nothing."""
        config = {key: value for key, value in config.items() if not key.startswith("_")}
        with torch.device(device if device is not None else "cpu"):
            unet = UNet2DConditionModel.from_config(config)
            return cls(unet)

    @classmethod
    def from_pretrained(cls, folder: str | Path, *, device: torch.device | str = "cpu",
                        dtype: torch.dtype = torch.float32) -> UNet2p5DConditionModel:
        """Load ``folder/config.json`` and ``folder/diffusion_pytorch_model.{safetensors,bin}`` strictly.

        Raises ``WeightsError`` naming the file and the first missing/unexpected key or shape mismatch.
        """
        folder = Path(folder)
        config_path = folder / "config.json"
        config = read_json(config_path)
        try:
            model = cls.from_config(config, device="meta")
        except (TypeError, ValueError, KeyError) as error:
            raise WeightsError(f"{config_path}: not a valid UNet2DConditionModel config ({error})") from error
        weights_path = find_weights(folder)
        assign_state_dict(model, load_weights(weights_path), weights_path)
        model.to(device=device, dtype=dtype).eval().requires_grad_(False)
        logger.info("loaded UNet 2.5D from %s (%s, %s)", folder, device, dtype)
        return model

    @property
    def config(self) -> Any:
        """The generator's ``UNet2DConditionModel`` config."""
        return self.unet.config

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.conv_out.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.unet.conv_out.weight.device

    def learned_text_embeddings(self) -> torch.Tensor:
        """The material text tokens stacked as [1, 2, 77, 1024] (albedo, MR): ``encoder_hidden_states``."""
        return torch.stack([getattr(self.unet, f"learned_text_clip_{m}") for m in MATERIALS]).unsqueeze(0)

    # ------------------------------------------------------------------------------------------
    # Forward
    # ------------------------------------------------------------------------------------------

    def reference_features(self, ref_latents: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the reference stream on clean latents [B, N_ref, 4, h, w] at timestep 0.

        Returns each transformer block's post-norm1 tokens [B, N_ref * L, C], keyed by layer name.
        """
        batch, n_ref = ref_latents.shape[:2]
        text = self.unet.learned_text_clip_ref.unsqueeze(0).expand(batch * n_ref, -1, -1)
        features: dict[str, torch.Tensor] = {}
        context = Block2p5DContext(num_views=n_ref, write_reference=True, reference_features=features)
        self.unet_dual(ref_latents.flatten(0, 1).to(self.dtype), REFERENCE_TIMESTEP, encoder_hidden_states=text,
                       cross_attention_kwargs={CONTEXT_KEY: context}, return_dict=False)
        return features

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | int, encoder_hidden_states: torch.Tensor, *,
                embeds_normal: torch.Tensor, embeds_position: torch.Tensor,
                ref_latents: torch.Tensor | None = None, dino_hidden_states: torch.Tensor | None = None,
                position_maps: torch.Tensor | None = None, ref_scale: torch.Tensor | float = 1.0,
                mva_scale: float = 1.0, num_in_batch: int | None = None, cache: dict[str, Any] | None = None,
                return_dict: bool = True) -> UNet2DConditionOutput | tuple[torch.Tensor]:
        """Predict the noise (v) of ``sample`` [B, 2, N, 4, h, h] (albedo then MR) -> [B * 2 * N, 4, h, h].

        * ``encoder_hidden_states`` [B, 2, 77, 1024]: each material's text tokens;
        * ``embeds_normal``, ``embeds_position`` [B, N, 4, h, h]: condition latents;
        * ``ref_latents`` [B, N_ref, 4, h, h]: clean reference latents (RA off when None);
        * ``dino_hidden_states`` [B, 257, 1536] (DINO attention off when None);
        * ``position_maps`` [B, N, 3, H, W] in [0, 1] (MA without RoPE when None). When fp16, the
          caller's tensor gets its background zeroed in place, as upstream (FACTS §7.4);
        * ``ref_scale``: float or [B] tensor scaling reference attention per batch item;
        * ``cache``: a dict shared by the calls of one generation; the first call stores the
          reference features, the projected DINO tokens and the voxel indices, later calls reuse
          them (and ignore the matching inputs).

        Returns ``UNet2DConditionOutput(sample=...)``, or a 1-tuple when ``return_dict`` is false.
        """
        if sample.ndim != 6 or sample.shape[1] != len(MATERIALS) or sample.shape[3] != LATENT_CHANNELS:
            raise ValueError(f"sample must be [B, {len(MATERIALS)}, N, {LATENT_CHANNELS}, h, w], "
                             f"got {list(sample.shape)}")
        batch, n_materials, n_views, _, height, width = sample.shape
        if num_in_batch is not None and num_in_batch != n_views:
            raise ValueError(f"num_in_batch={num_in_batch} does not match the {n_views} views of sample")
        for name, embeds in (("embeds_normal", embeds_normal), ("embeds_position", embeds_position)):
            if embeds is None or tuple(embeds.shape) != (batch, n_views, LATENT_CHANNELS, height, width):
                got = None if embeds is None else list(embeds.shape)
                raise ValueError(f"{name} must be [{batch}, {n_views}, {LATENT_CHANNELS}, {height}, {width}], got {got}")
        expected_text = (batch, n_materials, TEXT_TOKENS, TEXT_WIDTH)
        if tuple(encoder_hidden_states.shape) != expected_text:
            raise ValueError(f"encoder_hidden_states must be {list(expected_text)}, "
                             f"got {list(encoder_hidden_states.shape)}")
        cache = {} if cache is None else cache
        dtype = self.dtype

        conditions = [embeds.unsqueeze(1).expand(-1, n_materials, -1, -1, -1, -1)
                      for embeds in (embeds_normal, embeds_position)]
        unet_input = torch.cat([sample, *conditions], dim=3).to(dtype).reshape(-1, CONV_IN_CHANNELS, height, width)
        text = encoder_hidden_states.to(dtype).unsqueeze(2).expand(-1, -1, n_views, -1, -1)
        text = text.reshape(-1, TEXT_TOKENS, TEXT_WIDTH)

        context = Block2p5DContext(
            num_views=n_views, num_materials=n_materials,
            reference_features=self._cached_reference_features(cache, ref_latents),
            ref_scale=ref_scale.to(self.device) if isinstance(ref_scale, torch.Tensor) else ref_scale,
            mva_scale=mva_scale,
            dino_tokens=self._cached_dino_tokens(cache, dino_hidden_states),
            voxel_levels=self._cached_voxel_levels(cache, position_maps, height),
            rope_cache=cache.setdefault(CACHE_ROPE_TABLES, {}),
        )
        output = self.unet(unet_input, timestep, encoder_hidden_states=text,
                           cross_attention_kwargs={CONTEXT_KEY: context}, return_dict=False)[0]
        return UNet2DConditionOutput(sample=output) if return_dict else (output,)

    def _cached_reference_features(self, cache: dict[str, Any], ref_latents: torch.Tensor | None
                                   ) -> dict[str, torch.Tensor] | None:
        if CACHE_REFERENCE_FEATURES not in cache:
            if ref_latents is None:
                return None
            if ref_latents.ndim != 5 or ref_latents.shape[2] != LATENT_CHANNELS:
                raise ValueError(f"ref_latents must be [B, N_ref, {LATENT_CHANNELS}, h, w], got {list(ref_latents.shape)}")
            cache[CACHE_REFERENCE_FEATURES] = self.reference_features(ref_latents)
        return cache[CACHE_REFERENCE_FEATURES]

    def _cached_dino_tokens(self, cache: dict[str, Any], dino_hidden_states: torch.Tensor | None
                            ) -> torch.Tensor | None:
        if CACHE_DINO_TOKENS not in cache:
            if dino_hidden_states is None:
                return None
            if dino_hidden_states.ndim != 3 or dino_hidden_states.shape[-1] != DINO_WIDTH:
                raise ValueError(f"dino_hidden_states must be [B, T, {DINO_WIDTH}], got {list(dino_hidden_states.shape)}")
            cache[CACHE_DINO_TOKENS] = self.unet.image_proj_model_dino(dino_hidden_states.to(self.dtype))
        return cache[CACHE_DINO_TOKENS]

    def _cached_voxel_levels(self, cache: dict[str, Any], position_maps: torch.Tensor | None, latent_size: int
                             ) -> dict[int, VoxelIndexLevel] | None:
        if CACHE_VOXEL_INDICES not in cache:
            if position_maps is None:
                return None
            cache[CACHE_VOXEL_INDICES] = multires_voxel_indices(position_maps, latent_size)
        return cache[CACHE_VOXEL_INDICES]
