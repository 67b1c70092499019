"""scripts/serve and the launcher: settings, the assembled Triton runtime, readiness, clean shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hy3d_serving import settings as s
from hy3d_tooling import launcher
from hy3d_tooling.health import is_ready
from hy3d_tooling.server_process import ServeProcess, ServerStartError
from hy3d_tooling.triton_runtime import (
    STUB_NAME,
    TritonRuntimeError,
    assemble_backend_directory,
    check_stub_libraries,
    find_triton_install,
    interpreter_library_dir,
    perf_analyzer_library_dir,
    server_command,
    server_environment,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVE = str(REPO_ROOT / "scripts" / "serve")
#: A one-model repository that loads in seconds: the launcher's behaviour without the engines.
ECHO_CONFIG = """
name: "echo"
backend: "python"
max_batch_size: 0
input [ { name: "X" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "Y" data_type: TYPE_INT32 dims: [ 1 ] } ]
instance_group [ { kind: KIND_CPU count: 1 } ]
"""
ECHO_MODEL = """
import triton_python_backend_utils as pb_utils
class TritonPythonModel:
    def initialize(self, args):
        if "FAIL" in args["model_name"]:
            raise RuntimeError("echo refuses to load")
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy())])
                for r in requests]
"""


def echo_repository(root: Path, model_name: str = "echo") -> Path:
    (root / model_name / "1").mkdir(parents=True)
    (root / model_name / "config.pbtxt").write_text(ECHO_CONFIG.replace('"echo"', f'"{model_name}"'))
    (root / model_name / "1" / "model.py").write_text(ECHO_MODEL)
    return root


def wait_for_line(path: Path, line: str, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if line in path.read_text():
            return True
        time.sleep(0.2)
    return False


def test_defaults_are_the_documented_ports_on_all_interfaces():
    options = launcher.LaunchOptions.from_environ({})
    assert (options.endpoints.http_port, options.endpoints.grpc_port, options.endpoints.metrics_port) == (
        8000, 8001, 8002)
    assert options.endpoints.bind_address == "0.0.0.0"
    assert options.endpoints.http_url == "127.0.0.1:8000"
    assert options.model_repository == REPO_ROOT / "model_repository"


@pytest.mark.parametrize(("env", "message"), [
    ({"HY3D_HTTP_PORT": "80000"}, "HY3D_HTTP_PORT='80000': out of range"),
    ({"HY3D_GRPC_PORT": "eight"}, "HY3D_GRPC_PORT='eight': expected an integer"),
    ({"HY3D_GRPC_PORT": "8000"}, "must differ"),
    ({"HY3D_MODEL_REPOSITORY": "/nowhere"}, "HY3D_MODEL_REPOSITORY='/nowhere' is not a directory"),
])
def test_bad_server_settings_are_refused_naming_the_setting(env, message):
    with pytest.raises(s.SettingsError, match=message):
        launcher.LaunchOptions.from_environ(env)


def test_exit_status_of_a_signalled_server_is_shell_style():
    assert launcher.exit_status(0) == 0
    assert launcher.exit_status(1) == 1
    assert launcher.exit_status(-signal.SIGKILL) == 128 + signal.SIGKILL


def test_backend_directory_links_the_stub_of_this_python_and_is_idempotent(tmp_path):
    install = find_triton_install()
    target = assemble_backend_directory(install, tmp_path)
    stub = target / "python" / STUB_NAME
    assert stub.resolve() == install.stub_for(sys.version_info[:2]).resolve()
    assert (target / "python" / "libtriton_python.so").exists()
    assemble_backend_directory(install, tmp_path)  # second time: same links, no error
    assert stub.resolve() == install.stub_for(sys.version_info[:2]).resolve()
    check_stub_libraries(stub, server_environment(install))


def test_a_python_without_stub_is_refused_naming_the_available_ones(tmp_path):
    with pytest.raises(TritonRuntimeError, match=r"no Triton Python backend stub for Python 2\.7; stubs exist for"):
        assemble_backend_directory(find_triton_install(), tmp_path, version=(2, 7))


def test_server_environment_puts_this_venv_first_and_the_bundled_libraries_on_the_path():
    install = find_triton_install()
    env = server_environment(install, {"PATH": "/usr/bin", "LD_LIBRARY_PATH": "/opt/lib"})
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    libpython = [str(interpreter_library_dir())] if interpreter_library_dir() else []
    assert env["LD_LIBRARY_PATH"].split(os.pathsep) == [*libpython, str(install.libs_dir), "/opt/lib"]


@pytest.mark.integration
def test_serve_logs_readiness_and_stops_cleanly_on_sigterm(tmp_path):
    repository = echo_repository(tmp_path / "repository")
    server = ServeProcess([SERVE], tmp_path / "serve.log", env={"HY3D_MODEL_REPOSITORY": str(repository)})
    ready_line = f"tritonserver ready: http={server.endpoints.http_port}"
    with server:
        assert is_ready(server.http_url)
        assert wait_for_line(server.log_path, ready_line)
    assert server.stop() == 0
    log = server.log_path.read_text()
    assert "received SIGTERM: draining, then stopping tritonserver" in log
    assert "drained in" in log
    assert "tritonserver exited with status 0" in log


@pytest.mark.integration
def test_serve_exits_with_an_error_when_a_model_fails_to_load(tmp_path):
    repository = echo_repository(tmp_path / "repository", model_name="echo_FAIL")
    server = ServeProcess([SERVE], tmp_path / "serve.log", env={"HY3D_MODEL_REPOSITORY": str(repository)})
    with pytest.raises(ServerStartError, match="echo refuses to load"):
        server.start()
    assert server.stop() not in (0, None)


def test_serve_refuses_bad_settings_before_starting_anything():
    result = subprocess.run([SERVE], env={**os.environ, "HY3D_HTTP_PORT": "0x50"}, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == launcher.EXIT_BAD_SETUP
    assert "HY3D_HTTP_PORT='0x50': expected an integer in [1, 65535]" in result.stderr


def test_perf_analyzer_runs_with_the_linked_libraries(tmp_path):
    install = find_triton_install()
    libraries = perf_analyzer_library_dir(install, tmp_path / "libs")
    env = {**os.environ, "LD_LIBRARY_PATH": str(libraries)}
    result = subprocess.run([str(Path(sys.executable).with_name("perf_analyzer")), "--version"], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert "error while loading shared libraries" not in result.stderr
    assert result.returncode == 0, result.stderr


def test_the_operating_settings_have_their_documented_defaults():
    options = launcher.LaunchOptions.from_environ({})
    assert (options.drain_timeout_s, options.max_queue_size, options.cache_bytes, options.model_config) == (
        600, 8, 256 << 20, None)


@pytest.mark.parametrize(("env", "message"), [
    ({"HY3D_MODEL_CONFIG": "../gpu"}, "HY3D_MODEL_CONFIG='../gpu': expected a config name"),
    ({"HY3D_MODEL_CONFIG": "g p u"}, "HY3D_MODEL_CONFIG='g p u': expected a config name"),
    ({"HY3D_DRAIN_TIMEOUT_S": "0"}, "HY3D_DRAIN_TIMEOUT_S='0': out of range"),
    ({"HY3D_MAX_QUEUE_SIZE": "-1"}, "HY3D_MAX_QUEUE_SIZE='-1': out of range"),
    ({"HY3D_CACHE_BYTES": "lots"}, "HY3D_CACHE_BYTES='lots': expected an integer"),
])
def test_bad_operating_settings_are_refused_naming_the_setting(env, message):
    with pytest.raises(s.SettingsError, match=message):
        launcher.LaunchOptions.from_environ(env)


def test_tritonserver_runs_under_explicit_model_control_with_the_drain_timeout_as_exit_timeout():
    install = find_triton_install()
    options = launcher.LaunchOptions.from_environ({"HY3D_DRAIN_TIMEOUT_S": "900", "HY3D_MODEL_CONFIG": "gpu"})
    flags = launcher.triton_flags(options, install)
    assert flags[:2] == ["--model-control-mode=explicit", "--load-model=*"]
    assert "--model-config-name=gpu" in flags
    assert not [f for f in launcher.triton_flags(launcher.LaunchOptions.from_environ({}), install)
                if f.startswith("--model-config-name")]
    command = server_command(install, REPO_ROOT / "model_repository", Path("/backends"), options.endpoints,
                             extra_args=tuple(flags), exit_timeout_s=options.drain_timeout_s)
    assert "--exit-timeout-secs=900" in command


def test_the_server_environment_fixes_glibcs_mmap_threshold_unless_it_is_set():
    install = find_triton_install()
    assert server_environment(install, {})["MALLOC_MMAP_THRESHOLD_"] == str(1024 * 1024)
    assert server_environment(install, {"MALLOC_MMAP_THRESHOLD_": "65536"})["MALLOC_MMAP_THRESHOLD_"] == "65536"


def test_a_container_triton_home_is_run_with_its_own_backends_and_a_broken_one_is_named(tmp_path):
    from hy3d_tooling.triton_runtime import STUB_NAME, TritonRuntimeError, find_triton_install

    home = tmp_path / "tritonserver"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "tritonserver").touch()
    with pytest.raises(TritonRuntimeError, match=f"HY3D_TRITON_HOME={home}: .*{STUB_NAME} is missing"):
        find_triton_install({s.TRITON_HOME.env: str(home)})
    (home / "backends" / "python").mkdir(parents=True)
    (home / "backends" / "python" / STUB_NAME).touch()
    install = find_triton_install({s.TRITON_HOME.env: str(home)})
    assert install.prebuilt_backends and install.backends_dir == home / "backends"
    assert install.server_binary == home / "bin" / "tritonserver"
    assert install.cache_directory == home / "caches"
    assert not find_triton_install({}).prebuilt_backends  # unset: the nvidia-pytriton wheel's build
