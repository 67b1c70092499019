"""UNet 2.5D: parity with upstream on the tiny checkpoint (FACTS §7.2-7.4) and strict loading."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from hy3dcore.loading import WeightsError
from hy3dpaint import UNet2p5DConditionModel
from hy3dpaint.models.unet_2p5d import CACHE_DINO_TOKENS, CACHE_REFERENCE_FEATURES, CACHE_VOXEL_INDICES
from hy3dpaint.models.voxel_rope import multires_voxel_indices, rope_tables

from .tiny_weights import single_threaded_torch  # noqa: F401  (autouse fixture)

DATA = Path(__file__).resolve().parent.parent / "data" / "paint"
UNET_FOLDER = DATA / "model" / "hunyuan3d-paintpbr-tiny" / "unet"
DIFFUSION = DATA / "diffusion"
#: README tolerances.
FORWARD_ATOL = FORWARD_RTOL = 1e-4
ROPE_ATOL = 1e-6
LATENT_SIZE = 8


def tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(array, copy=True))


@pytest.fixture(scope="module")
def unet() -> UNet2p5DConditionModel:
    return UNet2p5DConditionModel.from_pretrained(UNET_FOLDER)


@pytest.fixture(scope="module")
def single() -> dict[str, np.ndarray]:
    return dict(np.load(DIFFUSION / "forward_single.npz"))


@pytest.fixture(scope="module")
def dino() -> torch.Tensor:
    return tensor(np.load(DIFFUSION / "dino_hidden_states.npz")["dino_hidden_states"]).float()


@dataclass
class SingleRun:
    output: torch.Tensor
    cache: dict
    position_maps: torch.Tensor


@pytest.fixture(scope="module")
def single_run(unet, single, dino) -> SingleRun:
    """One forward as upstream's ``forward_single``: B = 1, no CFG, default ref_scale."""
    cache: dict = {}
    position_maps = tensor(single["position_maps_in"])
    with torch.no_grad():
        output = unet(tensor(single["sample"]), tensor(single["timestep"]),
                      tensor(single["encoder_hidden_states"]).float(),
                      embeds_normal=tensor(single["embeds_normal"]), embeds_position=tensor(single["embeds_position"]),
                      ref_latents=tensor(single["ref_latents"]), dino_hidden_states=dino, position_maps=position_maps,
                      cache=cache)
    return SingleRun(output.sample, cache, position_maps)


def test_learned_text_tokens_are_the_recorded_encoder_hidden_states(unet, single):
    assert torch.equal(unet.learned_text_embeddings().half(), tensor(single["encoder_hidden_states"]))


def test_forward_single_matches_upstream(single_run, single):
    assert single_run.output.shape == (14, 4, LATENT_SIZE, LATENT_SIZE)
    np.testing.assert_allclose(single_run.output.numpy(), single["output"], atol=FORWARD_ATOL, rtol=FORWARD_RTOL)


def test_dino_projection_matches_upstream(single_run, single):
    projected = single_run.cache[CACHE_DINO_TOKENS]
    assert projected.shape == (1, 4 * 257, 1024)
    np.testing.assert_allclose(projected[:, :64].numpy(), single["dino_hidden_states_proj_first64"],
                               atol=FORWARD_ATOL, rtol=FORWARD_RTOL)


def test_forward_single_zeroes_the_fp16_position_maps_in_place_like_upstream(single_run, single):
    assert not np.array_equal(single["position_maps_in"], single["position_maps_after"])
    assert torch.equal(single_run.position_maps, tensor(single["position_maps_after"]))


def test_voxel_indices_are_exact_including_the_in_place_effect_on_coarse_grids(single):
    levels = multires_voxel_indices(tensor(single["position_maps_in"]), LATENT_SIZE)
    recorded = sorted(int(key.split("_L")[1]) for key in single if key.startswith("voxel_indices_L"))
    assert sorted(levels) == recorded
    for length, level in levels.items():
        assert level.resolution == int(single[f"voxel_resolution_L{length}"])
        np.testing.assert_array_equal(level.indices.numpy(), single[f"voxel_indices_L{length}"])


def test_voxel_indices_of_clean_coarse_grids_differ_from_upstream(single):
    """Without the in-place quirk (fp32 input: every grid sees clean maps) a coarse grid differs."""
    clean = multires_voxel_indices(tensor(single["position_maps_in"]).float(), LATENT_SIZE)
    assert any(not np.array_equal(clean[length].indices.numpy(), single[f"voxel_indices_L{length}"])
               for length in clean)


def test_rope_tables_match_upstream(single):
    levels = multires_voxel_indices(tensor(single["position_maps_in"]), LATENT_SIZE)
    for key in (k for k in single if k.startswith("rope_cos_L")):
        length, head_dim = _rope_key(key)
        cos, sin = rope_tables(levels[length], head_dim)
        materials = single[key].shape[0]
        np.testing.assert_allclose(cos.repeat(materials, 1, 1).numpy(), single[key], atol=ROPE_ATOL)
        np.testing.assert_allclose(sin.repeat(materials, 1, 1).numpy(), single[key.replace("cos", "sin")],
                                   atol=ROPE_ATOL)


def _rope_key(key: str) -> tuple[int, int]:
    """``rope_cos_L112_hd16`` -> (112, 16)."""
    _, _, length, head_dim = key.split("_")
    return int(length[1:]), int(head_dim[2:])


def test_reference_stream_features_match_upstream(single_run):
    recorded = np.load(DIFFUSION / "forward_single_ref_features.npz")
    features = single_run.cache[CACHE_REFERENCE_FEATURES]
    assert sorted(features) == sorted(key.removeprefix("ref_") for key in recorded.files)
    for key in recorded.files:
        np.testing.assert_allclose(features[key.removeprefix("ref_")].numpy(), recorded[key],
                                   atol=FORWARD_ATOL, rtol=FORWARD_RTOL)


def test_cfg_step0_and_last_step_with_carried_cache_match_upstream(unet, dino):
    step0 = np.load(DIFFUSION / "forward_cfg_step0.npz")
    last = np.load(DIFFUSION / "forward_cfg_last.npz")
    sampling = np.load(DIFFUSION / "sampling.npz")
    position_maps = (tensor(sampling["position_uint8"]).float() / 255).half().permute(0, 3, 1, 2).unsqueeze(0)
    text = unet.learned_text_embeddings().repeat(3, 1, 1, 1)
    conditions = {name: tensor(step0[name]).repeat(3, 1, 1, 1, 1)
                  for name in ("embeds_normal", "embeds_position")}
    cache: dict = {}
    with torch.no_grad():
        first = unet(tensor(step0["sample"]), tensor(step0["timestep"]), text, **conditions,
                     ref_latents=tensor(step0["ref_latents"]).repeat(3, 1, 1, 1, 1),
                     dino_hidden_states=torch.cat([torch.zeros_like(dino), torch.zeros_like(dino), dino]),
                     position_maps=position_maps.repeat(3, 1, 1, 1, 1), ref_scale=tensor(step0["ref_scale"]),
                     cache=cache).sample
        assert set(cache) >= {CACHE_REFERENCE_FEATURES, CACHE_DINO_TOKENS, CACHE_VOXEL_INDICES}
        # Later steps need neither the reference latents, the DINO states nor the position maps.
        final = unet(tensor(last["sample"]), tensor(last["timestep"]), text, **conditions,
                     ref_scale=tensor(step0["ref_scale"]), cache=cache).sample
    np.testing.assert_allclose(first.numpy(), step0["output"], atol=FORWARD_ATOL, rtol=FORWARD_RTOL)
    np.testing.assert_allclose(final.numpy(), last["output"], atol=FORWARD_ATOL, rtol=FORWARD_RTOL)


def test_reference_latents_of_batch_one_serve_every_cfg_branch(unet, single, dino):
    """The reference stream may run once (batch 1) for a batch of 3: same numbers as 3 copies."""
    text = tensor(single["encoder_hidden_states"]).float().repeat(2, 1, 1, 1)
    common = dict(embeds_normal=tensor(single["embeds_normal"]).repeat(2, 1, 1, 1, 1),
                  embeds_position=tensor(single["embeds_position"]).repeat(2, 1, 1, 1, 1),
                  dino_hidden_states=dino.repeat(2, 1, 1), ref_scale=torch.tensor([0.5, 1.0]))
    sample = tensor(single["sample"]).repeat(2, 1, 1, 1, 1, 1)
    with torch.no_grad():
        shared = unet(sample, 500, text, ref_latents=tensor(single["ref_latents"]), **common).sample
        copied = unet(sample, 500, text, ref_latents=tensor(single["ref_latents"]).repeat(2, 1, 1, 1, 1),
                      **common).sample
    np.testing.assert_allclose(shared.numpy(), copied.numpy(), atol=1e-5)


def test_forward_rejects_inputs_with_wrong_shapes(unet, single):
    sample = tensor(single["sample"])
    text = tensor(single["encoder_hidden_states"]).float()
    normal, position = tensor(single["embeds_normal"]), tensor(single["embeds_position"])
    with pytest.raises(ValueError, match=r"sample must be \[B, 2, N, 4, h, w\]"):
        unet(sample[:, :1], 500, text, embeds_normal=normal, embeds_position=position)
    with pytest.raises(ValueError, match="embeds_position must be"):
        unet(sample, 500, text, embeds_normal=normal, embeds_position=position[:, :3])
    with pytest.raises(ValueError, match="num_in_batch=3 does not match the 7 views"):
        unet(sample, 500, text, embeds_normal=normal, embeds_position=position, num_in_batch=3)
    with pytest.raises(ValueError, match="encoder_hidden_states must be"):
        unet(sample, 500, text[:, :, :10], embeds_normal=normal, embeds_position=position)


@pytest.fixture()
def unet_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "unet"
    shutil.copytree(UNET_FOLDER, folder)
    return folder


def _rewrite_weights(folder: Path, edit) -> None:
    path = folder / "diffusion_pytorch_model.bin"
    state_dict = torch.load(path, weights_only=True)
    edit(state_dict)
    torch.save(state_dict, path)


def test_loading_names_the_file_and_the_first_missing_key(unet_copy):
    _rewrite_weights(unet_copy, lambda sd: sd.pop("unet.learned_text_clip_mr"))
    with pytest.raises(WeightsError, match=r"diffusion_pytorch_model\.bin.*1 missing key\(s\), first "
                                           r"'unet\.learned_text_clip_mr'"):
        UNet2p5DConditionModel.from_pretrained(unet_copy)


def test_loading_names_the_first_unexpected_key(unet_copy):
    _rewrite_weights(unet_copy, lambda sd: sd.__setitem__("unet.extra.weight", torch.zeros(2)))
    with pytest.raises(WeightsError, match=r"1 unexpected key\(s\), first 'unet\.extra\.weight'"):
        UNet2p5DConditionModel.from_pretrained(unet_copy)


def test_loading_names_the_first_shape_mismatch(unet_copy):
    _rewrite_weights(unet_copy, lambda sd: sd.__setitem__("unet.conv_in.weight", torch.zeros(16, 4, 3, 3)))
    with pytest.raises(WeightsError, match=r"first 'unet\.conv_in\.weight': file has \[16, 4, 3, 3\], "
                                           r"model expects \[16, 12, 3, 3\]"):
        UNet2p5DConditionModel.from_pretrained(unet_copy)


def test_loading_fails_on_a_missing_or_malformed_config_or_weights_file(unet_copy):
    (unet_copy / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(WeightsError, match=r"config\.json: not valid JSON"):
        UNet2p5DConditionModel.from_pretrained(unet_copy)
    (unet_copy / "config.json").unlink()
    with pytest.raises(WeightsError, match=r"config\.json: file not found"):
        UNet2p5DConditionModel.from_pretrained(unet_copy)
    shutil.copyfile(UNET_FOLDER / "config.json", unet_copy / "config.json")
    (unet_copy / "diffusion_pytorch_model.bin").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match=r"diffusion_pytorch_model\.bin: cannot read weights"):
        UNet2p5DConditionModel.from_pretrained(unet_copy)
    (unet_copy / "diffusion_pytorch_model.bin").unlink()
    with pytest.raises(WeightsError, match="no weights file; expected one of"):
        UNet2p5DConditionModel.from_pretrained(unet_copy)


def test_loaded_unet_has_twelve_input_channels_and_the_requested_dtype():
    model = UNet2p5DConditionModel.from_pretrained(UNET_FOLDER, dtype=torch.float16)
    assert model.dtype == torch.float16
    assert model.unet.conv_in.in_channels == 12 and model.unet_dual.conv_in.in_channels == 4
    assert not any(p.requires_grad for p in model.parameters())
