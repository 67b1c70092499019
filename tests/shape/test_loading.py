"""Loading an official-layout folder: local only, strict on layout, keys, shapes, config targets."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file
from shape_testdata import MODEL_FOLDER, MODEL_ROOT

from hy3dcore.loading import WeightsError
from hy3dshape import Hunyuan3DDiTFlowMatchingPipeline
from hy3dshape.loading import ConfigError, read_config

SUBFOLDER = "hunyuan3d-dit-v2-1"


def _official_ckpt() -> dict[str, dict[str, torch.Tensor]]:
    return torch.load(MODEL_FOLDER / "model.fp16.ckpt", map_location="cpu", weights_only=True)


def _folder(tmp_path: Path, *, checkpoint: dict | None = None, config: dict | None = None) -> Path:
    """A copy of the tiny model folder with an optionally replaced checkpoint (.ckpt) and config."""
    folder = tmp_path / SUBFOLDER
    folder.mkdir()
    if config is None:
        shutil.copy(MODEL_FOLDER / "config.yaml", folder / "config.yaml")
    else:
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
    if checkpoint is None:
        shutil.copy(MODEL_FOLDER / "model.fp16.ckpt", folder / "model.fp16.ckpt")
    else:
        torch.save(checkpoint, folder / "model.fp16.ckpt")
    return tmp_path


def _load(root: Path, **kwargs) -> Hunyuan3DDiTFlowMatchingPipeline:
    return Hunyuan3DDiTFlowMatchingPipeline.from_pretrained(root, subfolder=SUBFOLDER, device="cpu",
                                                            dtype=torch.float32, **kwargs)


def _config() -> dict:
    return read_config(MODEL_FOLDER / "config.yaml")


def test_float16_weights_are_cast_to_the_requested_dtype():
    checkpoint = _official_ckpt()
    assert checkpoint["model"]["x_embedder.weight"].dtype == torch.float16
    for dtype in (torch.float32, torch.bfloat16):
        pipe = Hunyuan3DDiTFlowMatchingPipeline.from_pretrained(MODEL_ROOT, device="cpu", dtype=dtype)
        for network in (pipe.model, pipe.vae, pipe.conditioner):
            assert {p.dtype for p in network.parameters()} == {dtype}
            assert not network.training and not any(p.requires_grad for p in network.parameters())
        assert torch.equal(pipe.model.x_embedder.weight, checkpoint["model"]["x_embedder.weight"].to(dtype))


def test_cpu_defaults_to_float32():
    pipe = Hunyuan3DDiTFlowMatchingPipeline.from_pretrained(MODEL_ROOT, device="cpu")
    assert pipe.dtype == torch.float32 and pipe.model.dtype == torch.float32


def test_missing_model_folder_is_named(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        _load(tmp_path / "nowhere")


def test_missing_subfolder_is_named(tmp_path):
    with pytest.raises(WeightsError, match="no subfolder 'hunyuan3d-dit-v2-1'"):
        _load(tmp_path)


def test_missing_weights_file_is_named(tmp_path):
    root = _folder(tmp_path)
    with pytest.raises(WeightsError, match=r"model\.fp16\.safetensors"):
        _load(root, use_safetensors=True)


def test_missing_config_is_named(tmp_path):
    root = _folder(tmp_path)
    (root / SUBFOLDER / "config.yaml").unlink()
    with pytest.raises(WeightsError, match="config.yaml"):
        _load(root)


def test_missing_conditioner_entry_is_an_error(tmp_path):
    checkpoint = _official_ckpt()
    del checkpoint["conditioner"]
    with pytest.raises(WeightsError, match=r"model\.fp16\.ckpt: missing entry 'conditioner'"):
        _load(_folder(tmp_path, checkpoint=checkpoint))


def test_unexpected_top_level_entry_is_an_error(tmp_path):
    checkpoint = _official_ckpt()
    checkpoint["ema"] = {}
    with pytest.raises(WeightsError, match="unexpected entry 'ema'"):
        _load(_folder(tmp_path, checkpoint=checkpoint))


def test_not_a_dict_is_an_error(tmp_path):
    with pytest.raises(WeightsError, match="expected a mapping of tensors, got list"):
        _load(_folder(tmp_path, checkpoint=[1, 2]))


def test_missing_dit_key_names_file_part_and_key(tmp_path):
    checkpoint = _official_ckpt()
    del checkpoint["model"]["blocks.3.moe.gate.weight"]
    with pytest.raises(WeightsError, match=r"model\.fp16\.ckpt \[model\]: .*1 missing key\(s\), first 'blocks\.3\.moe\.gate\.weight'"):
        _load(_folder(tmp_path, checkpoint=checkpoint))


def test_unexpected_key_names_the_key(tmp_path):
    checkpoint = _official_ckpt()
    checkpoint["conditioner"]["main_image_encoder.model.pooler.weight"] = torch.zeros(2)
    with pytest.raises(WeightsError, match=r"\[conditioner\]: .*1 unexpected key\(s\), first 'main_image_encoder\.model\.pooler"):
        _load(_folder(tmp_path, checkpoint=checkpoint))


def test_the_official_conditioner_keys_keep_their_transformers_4_names():
    keys = set(_official_ckpt()["conditioner"])
    assert "main_image_encoder.model.encoder.layer.0.attention.attention.query.weight" in keys
    assert not any("q_proj" in key or "o_proj" in key for key in keys)


def test_a_missing_dinov2_attention_key_is_named_as_in_the_file(tmp_path):
    checkpoint = _official_ckpt()
    del checkpoint["conditioner"]["main_image_encoder.model.encoder.layer.1.attention.attention.value.bias"]
    with pytest.raises(WeightsError, match=r"\[conditioner\]: .*1 missing key\(s\), first "
                                           r"'main_image_encoder\.model\.encoder\.layer\.1\.attention\.attention\.value\.bias'"):
        _load(_folder(tmp_path, checkpoint=checkpoint))


def test_dinov2_keys_in_transformers_5_names_are_unexpected(tmp_path):
    checkpoint = _official_ckpt()
    conditioner = checkpoint["conditioner"]
    prefix = "main_image_encoder.model.encoder.layer.0.attention."
    conditioner[prefix + "q_proj.weight"] = conditioner.pop(prefix + "attention.query.weight")
    with pytest.raises(WeightsError, match=r"1 missing key\(s\), first '.*attention\.attention\.query\.weight'; "
                                           r"1 unexpected key\(s\), first '.*attention\.q_proj\.weight'"):
        _load(_folder(tmp_path, checkpoint=checkpoint))


def test_shape_mismatch_names_the_key_and_both_shapes(tmp_path):
    checkpoint = _official_ckpt()
    checkpoint["vae"]["post_kl.weight"] = torch.zeros(64, 8, dtype=torch.float16)
    with pytest.raises(WeightsError, match=r"\[vae\]: .*first 'post_kl\.weight': file has \[64, 8\], model expects \[64, 16\]"):
        _load(_folder(tmp_path, checkpoint=checkpoint))


def test_integer_tensor_is_rejected(tmp_path):
    checkpoint = _official_ckpt()
    checkpoint["model"]["x_embedder.bias"] = torch.zeros(64, dtype=torch.int64)
    with pytest.raises(WeightsError, match="floating dtype"):
        _load(_folder(tmp_path, checkpoint=checkpoint))


def test_vae_encoder_keys_may_be_absent(tmp_path):
    checkpoint = _official_ckpt()
    checkpoint["vae"] = {k: v for k, v in checkpoint["vae"].items() if not k.startswith(("encoder.", "pre_kl."))}
    pipe = _load(_folder(tmp_path, checkpoint=checkpoint))
    assert not any(key.startswith("encoder.") for key in pipe.vae.state_dict())


def test_safetensors_key_without_a_known_part_is_rejected(tmp_path):
    root = _folder(tmp_path)
    tensors = load_file(str(MODEL_FOLDER / "model.fp16.safetensors"))
    tensors["ema.x_embedder.weight"] = torch.zeros(1)
    save_file(tensors, str(root / SUBFOLDER / "model.fp16.safetensors"))
    with pytest.raises(WeightsError, match="key 'ema.x_embedder.weight' does not start with"):
        _load(root, use_safetensors=True)


def test_variant_none_reads_model_ckpt(tmp_path):
    root = _folder(tmp_path)
    (root / SUBFOLDER / "model.fp16.ckpt").rename(root / SUBFOLDER / "model.ckpt")
    assert _load(root, variant=None).model is not None


def test_unknown_target_is_rejected_without_importing_it(tmp_path):
    config = _config()
    config["model"]["target"] = "os.system"
    with pytest.raises(ConfigError, match=r"model\.target 'os\.system' is not a known class; allowed: \['hy3dshape"):
        _load(_folder(tmp_path, config=config))


def test_target_in_the_wrong_section_is_rejected(tmp_path):
    config = _config()
    config["model"]["target"] = config["vae"]["target"]
    with pytest.raises(ConfigError, match="belongs in section 'vae'"):
        _load(_folder(tmp_path, config=config))


def test_unknown_parameter_is_rejected(tmp_path):
    config = _config()
    config["vae"]["params"]["bogus"] = 1
    with pytest.raises(ConfigError, match=r"vae\.params has unknown parameter\(s\) \['bogus'\]"):
        _load(_folder(tmp_path, config=config))


def test_unsupported_variant_of_the_dit_is_rejected(tmp_path):
    config = _config()
    config["model"]["params"]["use_pos_emb"] = True
    with pytest.raises(ConfigError, match="use_pos_emb=True is not supported"):
        _load(_folder(tmp_path, config=config))


def test_missing_section_is_rejected(tmp_path):
    config = _config()
    del config["scheduler"]
    with pytest.raises(ConfigError, match="missing section 'scheduler'"):
        _load(_folder(tmp_path, config=config))


def test_unknown_image_encoder_type_is_rejected(tmp_path):
    config = _config()
    config["conditioner"]["params"]["main_image_encoder"]["type"] = "CLIPImageEncoder"
    with pytest.raises(ConfigError, match="'CLIPImageEncoder' is not supported"):
        _load(_folder(tmp_path, config=config))
