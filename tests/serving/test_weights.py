"""Weights folder check: an incomplete folder fails naming the missing file."""

from __future__ import annotations

import pytest

from hy3d_serving.weights import PAINT_FILES, SHAPE_FILES, WeightsError, check_required_weights, check_weights


def populate(root, entries):
    for entry in entries:
        name = entry if isinstance(entry, str) else entry[0]
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")


def test_complete_folders_pass(tmp_path):
    populate(tmp_path, SHAPE_FILES + PAINT_FILES)
    check_weights(tmp_path, SHAPE_FILES, "shape_dit")
    check_weights(tmp_path, PAINT_FILES, "paint_pbr")


def test_any_one_alternative_will_do(tmp_path):
    (tmp_path / "hunyuan3d-dit-v2-1").mkdir()
    (tmp_path / "hunyuan3d-dit-v2-1" / "config.yaml").write_text("x")
    (tmp_path / "hunyuan3d-dit-v2-1" / "model.fp16.safetensors").write_bytes(b"x")
    check_weights(tmp_path, SHAPE_FILES, "shape_dit")


def test_missing_file_is_named_with_the_stage(tmp_path):
    populate(tmp_path, PAINT_FILES)
    (tmp_path / "RealESRGAN_x4plus.pth").unlink()
    with pytest.raises(WeightsError, match=r"^paint_pbr: the weights folder is incomplete: missing .*RealESRGAN_x4plus\.pth"):
        check_weights(tmp_path, PAINT_FILES, "paint_pbr")


def test_missing_alternatives_are_all_named(tmp_path):
    populate(tmp_path, SHAPE_FILES[:1])
    with pytest.raises(WeightsError, match=r"model\.fp16\.ckpt or .*model\.fp16\.safetensors"):
        check_weights(tmp_path, SHAPE_FILES, "shape_dit")


def test_weights_dir_that_is_not_a_directory_is_named(tmp_path):
    with pytest.raises(WeightsError, match="is not a directory"):
        check_weights(tmp_path / "nowhere", SHAPE_FILES, "shape_dit")


def test_an_empty_file_passes_the_plain_check_but_not_the_non_empty_one(tmp_path):
    populate(tmp_path, SHAPE_FILES)
    (tmp_path / "hunyuan3d-dit-v2-1" / "config.yaml").write_bytes(b"")
    check_weights(tmp_path, SHAPE_FILES, "shape_dit")
    with pytest.raises(WeightsError, match=r"missing .*hunyuan3d-dit-v2-1/config\.yaml"):
        check_weights(tmp_path, SHAPE_FILES, "shape_dit", non_empty=True)


def test_required_weights_need_a_folder_and_name_the_setting(tmp_path):
    with pytest.raises(WeightsError, match=r"^paint_pbr: HY3D_REQUIRE_WEIGHTS is set but HY3D_WEIGHTS_DIR is unset.*"
                                           r"<weights>/hunyuan3d-paintpbr-v2-1/model_index\.json"):
        check_required_weights(None, PAINT_FILES, "paint_pbr")
    populate(tmp_path, PAINT_FILES)
    assert check_required_weights(tmp_path, PAINT_FILES, "paint_pbr") == tmp_path
