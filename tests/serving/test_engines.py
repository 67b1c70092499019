"""Engine selection: the weights setting is the one switch; neural engines get the device, dtype and sizes."""

from __future__ import annotations

from pathlib import Path

import pytest

from hy3d_serving import engines
from hy3d_serving.stage_config import StageConfig
from hy3d_serving.weights import PAINT_FILES, WeightsError


def builtin_config() -> StageConfig:
    return StageConfig(None, "cpu", "float32")


def test_unset_weights_select_the_builtin_engines(caplog):
    assert engines.load_shape_engine(builtin_config()).name == engines.SHAPE_BUILTIN
    with caplog.at_level("INFO", logger=engines.logger.name):
        assert engines.load_paint_engine(builtin_config()).name == engines.PAINT_BUILTIN
    assert "CPU loops of the renderer and the bake compiled" in caplog.text  # at load, not in the first request


@pytest.mark.parametrize("loader", [engines.load_shape_engine, engines.load_paint_engine])
def test_set_but_empty_weights_fail_naming_the_missing_file(tmp_path, loader):
    with pytest.raises(WeightsError, match=f"missing {tmp_path}/"):
        loader(StageConfig(tmp_path, "cpu", "float32"))


def test_neural_paint_engine_gets_device_dtype_and_size_overrides(tmp_path, monkeypatch):
    import torch

    for entry in PAINT_FILES:
        path = tmp_path / (entry if isinstance(entry, str) else entry[0])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    received = {}

    class RecordingPipeline:
        def __init__(self, config):
            received["config"] = config

    monkeypatch.setattr("hy3dpaint.pipeline.Hunyuan3DPaintPipeline", RecordingPipeline)
    sizes = {"paint_view_size": 64, "paint_render_size": 128, "paint_texture_size": 256, "paint_max_num_view": 7}
    engine = engines.load_paint_engine(StageConfig(tmp_path, "cpu", "bfloat16", sizes))
    config = received["config"]
    assert engine.name == engines.PAINT_NEURAL
    assert (config.resolution, config.render_size, config.texture_size, config.max_num_view) == (64, 128, 256, 7)
    assert (config.device, config.dtype) == ("cpu", torch.bfloat16)
    assert config.multiview_model_path == Path(tmp_path) / "hunyuan3d-paintpbr-v2-1"


def test_builtin_engine_names_are_the_ones_the_engine_libraries_report():
    from hy3dpaint import ProjectionTexturePipeline
    from hy3dshape import SilhouetteLiftingPipeline

    assert SilhouetteLiftingPipeline.engine_name == engines.SHAPE_BUILTIN
    assert ProjectionTexturePipeline.engine_name == engines.PAINT_BUILTIN
