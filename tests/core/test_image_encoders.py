"""DINOv2 through transformers' ``Dinov2Model``: the official files' 4.x names load unchanged through the one
key map, the loaded model computes the ViT those weights describe, and loading is strict and offline."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from hy3dcore.image_encoders import (
    DINOV2_KEY_MAP,
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_dinov2,
    dinov2_checkpoint_shapes,
    dinov2_config,
    load_dinov2,
)
from hy3dcore.loading import WeightsError

#: ``facebook/dinov2-giant``'s config.json (the texture stage's encoder).
GIANT = {
    "model_type": "dinov2", "hidden_size": 1536, "num_hidden_layers": 40, "num_attention_heads": 24,
    "mlp_ratio": 4, "use_swiglu_ffn": True, "image_size": 518, "patch_size": 14, "layer_norm_eps": 1e-6,
    "layerscale_value": 1.0, "qkv_bias": True, "hidden_act": "gelu", "drop_path_rate": 0.0,
    "architectures": ["Dinov2Model"], "torch_dtype": "float32", "transformers_version": "4.31.0.dev0",
}
SMALL_SWIGLU = {"model_type": "dinov2", "hidden_size": 48, "num_hidden_layers": 2, "num_attention_heads": 3,
                "image_size": 42, "patch_size": 14, "use_swiglu_ffn": True}
SMALL_GELU = {**SMALL_SWIGLU, "use_swiglu_ffn": False}


def file_weights(config: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in the official file layout (transformers 4.x names) for ``config``."""
    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for name, shape in dinov2_checkpoint_shapes(config).items():
        base = 1.0 if name.endswith(("norm1.weight", "norm2.weight", "layernorm.weight", "lambda1")) else 0.0
        weights[name] = base + 0.2 * torch.randn(shape, generator=generator)
    return weights


def write_folder(folder, config: dict, weights: dict[str, torch.Tensor]):
    (folder / "config.json").write_text(json.dumps(config))
    save_file({key: value.contiguous() for key, value in weights.items()}, str(folder / "model.safetensors"))
    return folder


def reference_vit(w: dict[str, torch.Tensor], config: dict, pixels: torch.Tensor) -> torch.Tensor:
    """DINOv2's ``last_hidden_state`` written out from the file's tensors (independent of transformers)."""
    width, heads, patch = config["hidden_size"], config["num_attention_heads"], config["patch_size"]
    eps = config.get("layer_norm_eps", 1e-6)
    batch, _, height, image_width = pixels.shape
    x = F.conv2d(pixels, w["embeddings.patch_embeddings.projection.weight"],
                 w["embeddings.patch_embeddings.projection.bias"], stride=patch).flatten(2).transpose(1, 2)
    x = torch.cat([w["embeddings.cls_token"].expand(batch, -1, -1), x], dim=1)
    positions = w["embeddings.position_embeddings"]
    grid = math.isqrt(positions.shape[1] - 1)
    rows, columns = height // patch, image_width // patch
    if (rows, columns) != (grid, grid):
        table = positions[:, 1:].reshape(1, grid, grid, width).permute(0, 3, 1, 2)
        table = F.interpolate(table, size=(rows, columns), mode="bicubic", align_corners=False)
        positions = torch.cat([positions[:, :1], table.permute(0, 2, 3, 1).reshape(1, -1, width)], dim=1)
    x = x + positions
    tokens = x.shape[1]
    for layer in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{layer}."
        h = F.layer_norm(x, (width,), w[p + "norm1.weight"], w[p + "norm1.bias"], eps)
        q, k, v = (F.linear(h, w[f"{p}attention.attention.{n}.weight"], w[f"{p}attention.attention.{n}.bias"])
                   .view(batch, tokens, heads, -1).transpose(1, 2) for n in ("query", "key", "value"))
        attention = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(width // heads), dim=-1) @ v
        attention = F.linear(attention.transpose(1, 2).reshape(batch, tokens, width),
                             w[p + "attention.output.dense.weight"], w[p + "attention.output.dense.bias"])
        x = x + w[p + "layer_scale1.lambda1"] * attention
        h = F.layer_norm(x, (width,), w[p + "norm2.weight"], w[p + "norm2.bias"], eps)
        if config.get("use_swiglu_ffn"):
            gate, up = F.linear(h, w[p + "mlp.weights_in.weight"], w[p + "mlp.weights_in.bias"]).chunk(2, dim=-1)
            mlp = F.linear(F.silu(gate) * up, w[p + "mlp.weights_out.weight"], w[p + "mlp.weights_out.bias"])
        else:
            hidden = F.gelu(F.linear(h, w[p + "mlp.fc1.weight"], w[p + "mlp.fc1.bias"]))
            mlp = F.linear(hidden, w[p + "mlp.fc2.weight"], w[p + "mlp.fc2.bias"])
        x = x + w[p + "layer_scale2.lambda1"] * mlp
    return F.layer_norm(x, (width,), w["layernorm.weight"], w["layernorm.bias"], eps)


def test_the_giant_file_layout_has_swiglu_weights_in_and_the_official_parameter_count():
    shapes = dinov2_checkpoint_shapes(GIANT)
    assert shapes["encoder.layer.39.mlp.weights_in.weight"] == (8192, 1536)  # [gate; up], 2 x 4096
    assert shapes["encoder.layer.39.mlp.weights_out.weight"] == (1536, 4096)
    assert shapes["encoder.layer.39.attention.attention.query.weight"] == (1536, 1536)
    assert shapes["embeddings.position_embeddings"] == (1, 1370, 1536)
    assert "encoder.layer.40.norm1.weight" not in shapes
    assert sum(math.prod(shape) for shape in shapes.values()) == 1_136_480_768  # DINOv2-g/14


def test_the_file_names_are_the_transformers_4_names_in_module_order():
    shapes = dinov2_checkpoint_shapes({"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                                       "image_size": 28})
    assert list(shapes) == [
        "embeddings.cls_token", "embeddings.mask_token", "embeddings.position_embeddings",
        "embeddings.patch_embeddings.projection.weight", "embeddings.patch_embeddings.projection.bias",
        "encoder.layer.0.norm1.weight", "encoder.layer.0.norm1.bias",
        "encoder.layer.0.attention.attention.query.weight", "encoder.layer.0.attention.attention.query.bias",
        "encoder.layer.0.attention.attention.key.weight", "encoder.layer.0.attention.attention.key.bias",
        "encoder.layer.0.attention.attention.value.weight", "encoder.layer.0.attention.attention.value.bias",
        "encoder.layer.0.attention.output.dense.weight", "encoder.layer.0.attention.output.dense.bias",
        "encoder.layer.0.layer_scale1.lambda1", "encoder.layer.0.norm2.weight", "encoder.layer.0.norm2.bias",
        "encoder.layer.0.mlp.fc1.weight", "encoder.layer.0.mlp.fc1.bias", "encoder.layer.0.mlp.fc2.weight",
        "encoder.layer.0.mlp.fc2.bias", "encoder.layer.0.layer_scale2.lambda1", "layernorm.weight", "layernorm.bias",
    ]


def test_every_rule_of_the_key_map_matches_the_installed_transformers_names():
    with torch.device("meta"):
        names = list(build_dinov2(SMALL_SWIGLU).state_dict())
    renamed = [rule for rule in DINOV2_KEY_MAP.rules if any(part in name for part in rule[1] for name in names)]
    kept = [rule for rule in DINOV2_KEY_MAP.rules if any(rule[0] in name for name in names)]
    # transformers 5.x: every rule renames; 4.x: the module already has the file's names and no rule applies.
    assert renamed == list(DINOV2_KEY_MAP.rules) or kept == list(DINOV2_KEY_MAP.rules)


@pytest.mark.parametrize("config", [SMALL_SWIGLU, SMALL_GELU], ids=["swiglu", "gelu"])
@pytest.mark.parametrize("side", [42, 28], ids=["native-grid", "resized-positions"])
def test_the_loaded_model_computes_the_vit_its_file_describes(tmp_path, config, side):
    weights = file_weights(config)
    model = load_dinov2(write_folder(tmp_path, config, weights))
    pixels = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        tokens = model(pixel_values=pixels).last_hidden_state
    assert tokens.shape == (2, 1 + (side // 14) ** 2, 48)
    torch.testing.assert_close(tokens, reference_vit(weights, config, pixels), rtol=0, atol=1e-4)


def test_gate_and_up_projections_are_the_halves_of_weights_in(tmp_path):
    weights = file_weights(SMALL_SWIGLU)
    mlp = load_dinov2(write_folder(tmp_path, SMALL_SWIGLU, weights)).encoder.layer[1].mlp
    gate, up = weights["encoder.layer.1.mlp.weights_in.weight"].chunk(2)
    assert torch.equal(mlp.gate_proj.weight, gate) and torch.equal(mlp.up_proj.weight, up)
    assert torch.equal(mlp.down_proj.bias, weights["encoder.layer.1.mlp.weights_out.bias"])


def test_weights_are_cast_once_and_the_model_is_frozen_in_eval_mode(tmp_path):
    model = load_dinov2(write_folder(tmp_path, SMALL_SWIGLU, file_weights(SMALL_SWIGLU)), dtype=torch.bfloat16)
    assert {parameter.dtype for parameter in model.parameters()} == {torch.bfloat16}
    assert not model.training and not any(parameter.requires_grad for parameter in model.parameters())


def test_a_config_with_an_integral_float_mlp_ratio_is_accepted():
    assert dinov2_config({**SMALL_SWIGLU, "mlp_ratio": 4.0}).mlp_ratio == 4


def test_missing_files_are_named(tmp_path):
    with pytest.raises(WeightsError, match="missing config.json"):
        load_dinov2(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(SMALL_SWIGLU))
    with pytest.raises(WeightsError, match="no weights file; expected one of model.safetensors, pytorch_model.bin"):
        load_dinov2(tmp_path)


def test_weights_of_the_other_mlp_variant_are_rejected_by_key(tmp_path):
    write_folder(tmp_path, SMALL_SWIGLU, file_weights(SMALL_GELU))
    with pytest.raises(WeightsError, match=r"missing key\(s\), first 'encoder\.layer\.0\.mlp\.weights_in\.weight'; "
                                           r"\d+ unexpected key\(s\), first 'encoder\.layer\.0\.mlp\.fc1\."):
        load_dinov2(tmp_path)


def test_a_missing_attention_key_is_named_as_in_the_file(tmp_path):
    weights = file_weights(SMALL_SWIGLU)
    del weights["encoder.layer.1.attention.output.dense.weight"]
    with pytest.raises(WeightsError, match=r"1 missing key\(s\), first 'encoder\.layer\.1\.attention\.output\.dense\.weight'"):
        load_dinov2(write_folder(tmp_path, SMALL_SWIGLU, weights))


def test_an_invalid_config_json_is_named(tmp_path):
    write_folder(tmp_path, {**SMALL_SWIGLU, "num_register_tokens": 4}, file_weights(SMALL_SWIGLU))
    with pytest.raises(WeightsError, match=r"config\.json: DINOv2 config: .*register tokens"):
        load_dinov2(tmp_path)


@pytest.mark.parametrize(("values", "message"), [
    ({"model_type": "vit"}, "only 'dinov2'"),
    ({"hidden_act": "bogus"}, "hidden_act 'bogus' is not supported"),
    ({"hidden_size": 50, "num_attention_heads": 3}, "not divisible"),
    ({"num_register_tokens": 4}, "register tokens"),
    ({"mlp_ratio": 2.5}, "mlp_ratio"),
])
def test_unsupported_configs_are_rejected(values, message):
    with pytest.raises(ValueError, match=message):
        dinov2_config(values)


def test_imagenet_statistics():
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406) and IMAGENET_STD == (0.229, 0.224, 0.225)
