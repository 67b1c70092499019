"""Fail closed: with HY3D_REQUIRE_WEIGHTS / ``require_weights`` there is no silent fallback.

Promises: the flag reads 1/true/yes/on and 0/false/no/off (anything else is refused naming it); a stage
whose real engine cannot load fails its load with a message naming what is missing: an unset or
incomplete weights folder (an empty file counts as missing), or, in preprocess, the rembg model file;
and ``scripts/serve`` then exits non-zero within a minute instead of serving the built-in engines.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import pytest

from hy3d_serving import engines
from hy3d_serving import settings as s
from hy3d_serving.stage_config import StageConfig
from hy3d_serving.weights import PAINT_FILES, SHAPE_FILES, WeightsError
from hy3d_tooling.server_process import LOOPBACK, free_port

SERVE_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "serve"
#: Stage settings of the developer's shell that must not reach the server under test.
STAGE_ENVIRONMENT = ("HY3D_WEIGHTS_DIR", "HY3D_DEVICE", "HY3D_DTYPE", "HY3D_MODEL_CONFIG")
#: The promise: a server that cannot serve its real engines exits within this many seconds.
EXIT_WITHIN_S = 60


def required(weights_dir=None) -> StageConfig:
    return StageConfig(weights_dir, "cpu", "float32", require_weights=True)


def populate(root, entries, content=b"x"):
    for entry in entries:
        path = root / (entry if isinstance(entry, str) else entry[0])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("true", True), ("TRUE", True), ("yes", True),
                                               ("0", False), ("false", False), ("", False), (None, False)])
def test_require_weights_reads_the_usual_spellings_and_defaults_to_off(raw, expected):
    environ = {} if raw is None else {"HY3D_REQUIRE_WEIGHTS": raw}
    assert StageConfig.resolve({}, environ, cuda_available=lambda: False).require_weights is expected


def test_require_weights_comes_from_the_config_parameter_and_the_environment_wins():
    assert StageConfig.resolve({"require_weights": "true"}, {}, cuda_available=lambda: False).require_weights
    assert not StageConfig.resolve({"require_weights": "true"}, {"HY3D_REQUIRE_WEIGHTS": "0"},
                                   cuda_available=lambda: False).require_weights


def test_a_bad_require_weights_value_is_refused_naming_the_setting():
    with pytest.raises(s.SettingsError, match="HY3D_REQUIRE_WEIGHTS='maybe': expected one of 1, true"):
        StageConfig.resolve({}, {"HY3D_REQUIRE_WEIGHTS": "maybe"}, cuda_available=lambda: False)


@pytest.mark.parametrize(("loader", "stage"), [(engines.load_shape_engine, "shape_dit"),
                                               (engines.load_paint_engine, "paint_pbr")])
def test_without_a_weights_folder_the_load_fails_instead_of_serving_the_builtin_engine(loader, stage):
    with pytest.raises(WeightsError, match=f"^{stage}: HY3D_REQUIRE_WEIGHTS is set but HY3D_WEIGHTS_DIR is unset"):
        loader(required())


def test_an_incomplete_weights_folder_fails_naming_the_missing_file(tmp_path):
    populate(tmp_path, SHAPE_FILES[:1])
    with pytest.raises(WeightsError, match=f"missing {tmp_path}/hunyuan3d-dit-v2-1/model.fp16.ckpt"):
        engines.load_shape_engine(required(tmp_path))


def test_an_empty_weights_file_counts_as_missing(tmp_path):
    populate(tmp_path, PAINT_FILES)
    (tmp_path / "RealESRGAN_x4plus.pth").write_bytes(b"")
    with pytest.raises(WeightsError, match=f"missing {tmp_path}/RealESRGAN_x4plus.pth"):
        engines.load_paint_engine(required(tmp_path))


def test_without_the_flag_an_unset_folder_still_selects_the_builtin_engines(monkeypatch):
    monkeypatch.delenv("HY3D_REMBG_MODEL", raising=False)
    monkeypatch.delenv("U2NET_HOME", raising=False)
    config = StageConfig(None, "cpu", "float32")
    assert engines.load_shape_engine(config).name == engines.SHAPE_BUILTIN
    assert engines.load_background_remover(config).method == "classical"


def test_preprocess_without_the_rembg_model_fails_naming_the_path(tmp_path, monkeypatch):
    monkeypatch.delenv("U2NET_HOME", raising=False)
    monkeypatch.setenv("HY3D_REMBG_MODEL", str(tmp_path / "u2net.onnx"))
    with pytest.raises(WeightsError, match=f"^preprocess: .*{tmp_path}/u2net.onnx is not a file"):
        engines.load_background_remover(required())
    monkeypatch.delenv("HY3D_REMBG_MODEL")
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    with pytest.raises(WeightsError, match=f"missing {tmp_path}/u2net.onnx"):
        engines.load_background_remover(required())


def test_preprocess_with_the_rembg_model_loads_rembg_and_logs_it(tmp_path, monkeypatch, caplog):
    from shape.tiny_u2net import write_tiny_u2net

    monkeypatch.delenv("U2NET_HOME", raising=False)
    monkeypatch.setenv("HY3D_REMBG_MODEL", str(write_tiny_u2net(tmp_path / "u2net.onnx")))
    with caplog.at_level(logging.INFO, logger="hy3d_serving.engines"):
        remover = engines.load_background_remover(required())
    assert remover.method == "rembg"
    assert "background remover loaded (method=rembg)" in caplog.text


@pytest.mark.integration
def test_serve_exits_non_zero_within_a_minute_naming_what_is_missing(tmp_path):
    env = dict(os.environ)
    env.update({name: "" for name in STAGE_ENVIRONMENT})
    env.update({"HY3D_REQUIRE_WEIGHTS": "1", "HY3D_REMBG_MODEL": "", "U2NET_HOME": "",
                s.BIND_ADDRESS.env: LOOPBACK, s.HTTP_PORT.env: str(free_port()),
                s.GRPC_PORT.env: str(free_port()), s.METRICS_PORT.env: str(free_port())})
    try:
        result = subprocess.run([str(SERVE_SCRIPT)], env=env, capture_output=True, text=True,
                                timeout=EXIT_WITHIN_S, check=False)
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"scripts/serve was still running after {EXIT_WITHIN_S} s:\n{expired.stdout}\n{expired.stderr}")
    log = result.stdout + result.stderr
    assert result.returncode != 0, log
    assert "shape_dit: HY3D_REQUIRE_WEIGHTS is set but HY3D_WEIGHTS_DIR is unset" in log
    assert "paint_pbr: HY3D_REQUIRE_WEIGHTS is set but HY3D_WEIGHTS_DIR is unset" in log
    assert "preprocess: HY3D_REQUIRE_WEIGHTS is set and background removal is on" in log
    assert "tritonserver ready" not in log
