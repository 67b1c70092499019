"""Full-size state dicts, built on the meta device: keys and shapes equal the upstream manifests."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL

from hy3dpaint import UNet2p5DConditionModel
from hy3dpaint.models.vae import rename_legacy_attention_keys

KEYS = Path(__file__).resolve().parent.parent / "data" / "keys" / "paint"
#: SD-2.x VAE config (the real ``vae/config.json`` values).
SD2_VAE_CONFIG = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2, "norm_num_groups": 32, "act_fn": "silu", "sample_size": 768,
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
}


def read_manifest(name: str) -> list[tuple[str, list[int]]]:
    rows = []
    for line in (KEYS / name).read_text(encoding="utf-8").splitlines():
        key, shape = line.split("\t")
        rows.append((key, json.loads(shape)))
    return rows


def state_dict_manifest(module: torch.nn.Module) -> list[tuple[str, list[int]]]:
    return [(key, list(value.shape)) for key, value in module.state_dict().items()]


def test_full_size_unet_2p5d_keys_and_shapes_equal_the_checkpoint_manifest_in_order():
    config = json.loads((KEYS / "unet_config_used.json").read_text(encoding="utf-8"))
    model = UNet2p5DConditionModel.from_config(config, device="meta")
    ours = state_dict_manifest(model)
    assert ours == read_manifest("unet_2p5d.tsv")
    assert sum(1 for key, _ in ours if key.startswith("unet.")) == 1061
    assert sum(1 for key, _ in ours if key.startswith("unet_dual.")) == 686
    assert sum(torch.Size(shape).numel() for _, shape in ours) == 1_962_246_472


def test_full_size_vae_keys_equal_the_manifest_and_legacy_names_are_renamed_on_load():
    with torch.device("meta"):
        vae = AutoencoderKL.from_config(SD2_VAE_CONFIG)
    expected = read_manifest("vae.tsv")
    assert state_dict_manifest(vae) == expected
    legacy = {key: torch.empty(shape, device="meta") for key, shape in read_manifest("vae_legacy_names.tsv")}
    renamed = rename_legacy_attention_keys(legacy)
    assert sorted((key, list(value.shape)) for key, value in renamed.items()) == sorted(expected)
