"""``hy3dshape.models.dinov2``: transformers-4 key names, the SwiGLU (giant) variant, HF folders."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from hy3dshape.models.dinov2 import Dinov2Config, Dinov2Model
from hy3dshape.state_dicts import CheckpointError

GIANT = {
    "model_type": "dinov2", "hidden_size": 1536, "num_hidden_layers": 40, "num_attention_heads": 24,
    "mlp_ratio": 4, "use_swiglu_ffn": True, "image_size": 518, "patch_size": 14, "layer_norm_eps": 1e-6,
    "layerscale_value": 1.0, "qkv_bias": True, "hidden_act": "gelu", "drop_path_rate": 0.0,
    "architectures": ["Dinov2Model"], "torch_dtype": "float32", "out_features": ["stage40"],
}
SMALL_SWIGLU = {"hidden_size": 48, "num_hidden_layers": 2, "num_attention_heads": 3, "image_size": 42,
                "patch_size": 14, "use_swiglu_ffn": True}


def _random_model(config: dict, seed: int = 0) -> Dinov2Model:
    torch.manual_seed(seed)
    model = Dinov2Model(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.2)
    return model.eval()


def test_giant_has_swiglu_keys_with_the_transformers_hidden_size_rule():
    with torch.device("meta"):
        model = Dinov2Model(Dinov2Config.from_dict(GIANT))
    shapes = {key: list(value.shape) for key, value in model.state_dict().items()}
    assert shapes["encoder.layer.39.mlp.weights_in.weight"] == [8192, 1536]  # 2 x (int(6144 * 2/3) -> x8)
    assert shapes["encoder.layer.39.mlp.weights_out.weight"] == [1536, 4096]
    assert shapes["embeddings.position_embeddings"] == [1, 1370, 1536]
    assert "encoder.layer.40.norm1.weight" not in shapes
    assert sum(value.numel() for value in model.state_dict().values()) == 1_136_480_768  # DINOv2-g/14


def test_layer_key_names_follow_transformers_4():
    with torch.device("meta"):
        model = Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=28))
    assert list(model.state_dict()) == [
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


def test_swiglu_gates_the_second_half_with_silu_of_the_first():
    model = _random_model(SMALL_SWIGLU)
    mlp = model.encoder.layer[0].mlp
    x = torch.randn(2, 5, 48)
    projected = F.linear(x, mlp.weights_in.weight, mlp.weights_in.bias)
    gate, value = projected[..., : mlp.weights_out.in_features], projected[..., mlp.weights_out.in_features :]
    expected = F.linear(F.silu(gate) * value, mlp.weights_out.weight, mlp.weights_out.bias)
    assert torch.allclose(mlp(x), expected, atol=1e-6)


def test_from_pretrained_reads_a_hugging_face_folder(tmp_path):
    model = _random_model(SMALL_SWIGLU)
    (tmp_path / "config.json").write_text(json.dumps({**SMALL_SWIGLU, "model_type": "dinov2"}))
    save_file({key: value.contiguous() for key, value in model.state_dict().items()},
              str(tmp_path / "model.safetensors"))
    loaded = Dinov2Model.from_pretrained(tmp_path)
    assert not loaded.training
    pixels = torch.randn(2, 3, 42, 42)
    with torch.inference_mode():
        assert torch.equal(loaded(pixels), model(pixels))
    half = Dinov2Model.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}


def test_output_is_cls_plus_patches_and_other_sizes_use_resized_positions():
    model = _random_model({**SMALL_SWIGLU, "image_size": 518})
    with torch.inference_mode():
        assert model(torch.randn(1, 3, 518, 518)).shape == (1, 1370, 48)
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 257, 48)
    embeddings = model.embeddings
    assert embeddings.position_embeddings_for(518, 518) is embeddings.position_embeddings
    with torch.no_grad():
        embeddings.position_embeddings[:, 1:] = 0.25
    resized = embeddings.position_embeddings_for(224, 224)
    assert resized.shape == (1, 257, 48)
    assert torch.allclose(resized[:, 1:], torch.full_like(resized[:, 1:], 0.25), atol=1e-6)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing config.json"):
        Dinov2Model.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(SMALL_SWIGLU))
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        Dinov2Model.from_pretrained(tmp_path)


def test_weights_of_the_wrong_variant_are_rejected(tmp_path):
    gelu = _random_model({**SMALL_SWIGLU, "use_swiglu_ffn": False})
    (tmp_path / "config.json").write_text(json.dumps(SMALL_SWIGLU))
    save_file({key: value.contiguous() for key, value in gelu.state_dict().items()}, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"unexpected key 'encoder\.layer\.0\.mlp\.fc1\."):
        Dinov2Model.from_pretrained(tmp_path)


@pytest.mark.parametrize(("values", "message"), [
    ({"model_type": "vit"}, "only 'dinov2'"),
    ({"hidden_act": "mish"}, "hidden_act 'mish' is not supported"),
    ({"hidden_size": 50, "num_attention_heads": 3}, "not divisible"),
    ({"num_register_tokens": 4}, "register tokens"),
])
def test_unsupported_configs_are_rejected(values, message):
    with pytest.raises(ValueError, match=message):
        Dinov2Config.from_dict(values)


def test_wrong_channel_count_is_rejected():
    model = _random_model(SMALL_SWIGLU)
    with pytest.raises(ValueError, match=r"pixel_values \[B, 3, H, W\]"):
        model(torch.zeros(1, 4, 42, 42))
