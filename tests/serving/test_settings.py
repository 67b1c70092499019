"""Settings: environment over config.pbtxt, empty means unset, bad values named with what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from hy3d_serving import settings as s
from hy3d_serving.stage_config import StageConfig


def never_cuda() -> bool:
    return False


def always_cuda() -> bool:
    return True


def test_environment_wins_over_config_parameter_and_empty_means_unset():
    assert s.lookup(s.WEIGHTS_DIR, {"weights_dir": "/from/config"}, {"HY3D_WEIGHTS_DIR": "/from/env"}) == "/from/env"
    assert s.lookup(s.WEIGHTS_DIR, {"weights_dir": "/from/config"}, {"HY3D_WEIGHTS_DIR": ""}) == "/from/config"
    assert s.lookup(s.WEIGHTS_DIR, {"weights_dir": ""}, {}) is None


def test_unknown_config_parameter_is_refused_naming_it_and_the_known_ones():
    with pytest.raises(s.SettingsError, match="'weight_dir'.*known: compile, device, dtype, .*weights_dir"):
        s.model_parameters({"name": "shape_dit", "parameters": {"weight_dir": {"string_value": "/x"}}})


def test_config_parameters_are_read_as_strings():
    config = {"parameters": {"weights_dir": {"string_value": "/w"}, "paint_view_size": {"string_value": "64"}}}
    assert s.model_parameters(config) == {"weights_dir": "/w", "paint_view_size": "64"}


def test_unset_weights_select_builtin_engines_on_cpu_in_float32():
    config = StageConfig.resolve({}, {}, cuda_available=never_cuda)
    assert config == StageConfig(None, "cpu", "float32", {})


def test_auto_device_uses_cuda_in_float16_when_available():
    config = StageConfig.resolve({}, {}, cuda_available=always_cuda)
    assert (config.device, config.dtype) == ("cuda", "float16")


def test_gpu_instance_runs_on_its_own_device():
    config = StageConfig.resolve({}, {}, instance_kind="KIND_GPU", instance_device_id=3, cuda_available=always_cuda)
    assert config.device == "cuda:3"


def test_explicit_device_and_dtype_are_kept():
    config = StageConfig.resolve({"device": "cpu", "dtype": "bfloat16", "weights_dir": "/w"}, {},
                                 cuda_available=always_cuda)
    assert config == StageConfig(Path("/w"), "cpu", "bfloat16", {})


@pytest.mark.parametrize(("env", "message"), [
    ({"HY3D_DEVICE": "tpu"}, "HY3D_DEVICE='tpu': expected one of auto, cpu, cuda or cuda:N"),
    ({"HY3D_DEVICE": "cuda"}, "HY3D_DEVICE='cuda': no CUDA device"),
    ({"HY3D_DTYPE": "float8"}, "HY3D_DTYPE='float8': expected one of auto, float32"),
    ({"HY3D_PAINT_VIEW_SIZE": "big"}, "HY3D_PAINT_VIEW_SIZE='big': expected an integer in"),
    ({"HY3D_PAINT_TEXTURE_SIZE": "100000"}, "HY3D_PAINT_TEXTURE_SIZE='100000': out of range"),
])
def test_bad_stage_settings_are_refused_naming_the_setting(env, message):
    with pytest.raises(s.SettingsError) as caught:
        StageConfig.resolve({}, env, cuda_available=never_cuda)
    assert message in str(caught.value)


def test_paint_size_overrides_come_from_environment_or_config():
    config = StageConfig.resolve({"paint_render_size": "128"}, {"HY3D_PAINT_VIEW_SIZE": "64"},
                                 cuda_available=never_cuda)
    assert config.paint_sizes == {"paint_view_size": 64, "paint_render_size": 128}


def test_every_setting_has_a_distinct_environment_variable_and_a_paint_range_where_needed():
    names = [setting.env for setting in s.SETTINGS]
    assert len(names) == len(set(names))
    assert all(name.startswith("HY3D_") for name in names)
    assert set(s.PAINT_SIZE_RANGES) == {setting.parameter for setting in s.PAINT_SIZE_SETTINGS}
