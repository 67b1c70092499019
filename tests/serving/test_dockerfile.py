"""Dockerfile.triton: lint-clean (hadolint), pinned NGC base, weights and the rembg model baked in and wired to
their settings, the GPU model configs, fail-closed loading, an exit timeout covering the longest request, and
only the downloads that inference reads. The image cannot be built on the CPU-only CI; its entrypoint is our
launcher, whose tritonserver command line is built here from the image's settings and a container-shaped
Triton tree (``HY3D_TRITON_HOME``), without starting anything.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hy3d_serving import settings

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile.triton"
GPU_DOC = REPO_ROOT / "docs" / "gpu.md"
HADOLINT = Path(sys.executable).with_name("hadolint")
#: Triton release inside each NGC image tag we have shipped or developed against (NGC support matrix).
TRITON_RELEASE_OF_NGC_TAG = {"24.10": "2.51", "24.11": "2.52", "24.12": "2.53", "25.01": "2.54"}
#: The Triton of the development runtime (nvidia-pytriton 0.7.0 in requirements.lock).
DEV_TRITON_RELEASE = "2.51"


def text() -> str:
    return DOCKERFILE.read_text()


def env_values() -> dict[str, str]:
    """Every ``NAME=value`` of the final stage's ENV instruction."""
    block = re.search(r"^ENV (.+?)(?=^\S)", text().split("FROM ${TRITON_IMAGE}\n")[-1], re.MULTILINE | re.DOTALL)
    assert block
    return dict(re.findall(r"([A-Z0-9_]+)=(\S+)", block.group(1)))


def entrypoint_command(environ: dict[str, str], *extra: str) -> list[str]:
    """The tritonserver command line the image's ENTRYPOINT (the launcher) builds with ``environ``.

    The container's Triton tree and model repository are stood in for by a temporary tree of the same
    layout and by the checkout's repository; the command's first item is named ``tritonserver``.
    """
    import tempfile

    from hy3d_tooling.launcher import LaunchOptions, launch_command
    from hy3d_tooling.triton_runtime import STUB_NAME, find_triton_install

    line = next(line for line in text().splitlines() if line.startswith("ENTRYPOINT "))
    assert json.loads(line[len("ENTRYPOINT "):]) == ["python3", "-m", "hy3d_tooling.launcher"]
    with tempfile.TemporaryDirectory() as home:
        for path in (Path(home) / "bin" / "tritonserver", Path(home) / "backends" / "python" / STUB_NAME):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        image_env = {**environ, settings.TRITON_HOME.env: home,
                     settings.MODEL_REPOSITORY.env: str(REPO_ROOT / "model_repository")}
        install = find_triton_install(image_env)
        assert install.prebuilt_backends
        options = LaunchOptions.from_environ(image_env)
        command = launch_command(options, install, Path(environ[settings.MODEL_REPOSITORY.env]),
                                 install.backends_dir, extra)
        return ["tritonserver", *command[1:]]


def test_hadolint_reports_nothing():
    result = subprocess.run([str(HADOLINT), str(DOCKERFILE)], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0 and result.stdout.strip() == "", result.stdout + result.stderr


def test_base_image_is_a_pinned_ngc_tritonserver_python_image():
    match = re.search(r"^ARG TRITON_IMAGE=(\S+)$", text(), re.MULTILINE)
    assert match and re.fullmatch(r"nvcr\.io/nvidia/tritonserver:\d{2}\.\d{2}-py3", match.group(1))


def test_the_triton_versions_of_image_and_development_are_stated_in_the_gpu_guide():
    tag = re.search(r"^ARG TRITON_IMAGE=nvcr\.io/nvidia/tritonserver:(\d{2}\.\d{2})-py3$", text(), re.MULTILINE)
    image_release = TRITON_RELEASE_OF_NGC_TAG[tag.group(1)]
    guide = GPU_DOC.read_text()
    assert f"tritonserver:{tag.group(1)}-py3` (Triton {image_release})" in guide
    assert f"Triton {DEV_TRITON_RELEASE}" in guide and "## Triton versions" in guide


def test_image_serves_the_repository_with_the_baked_weights_and_checks_readiness():
    assert "HY3D_WEIGHTS_DIR=/opt/hy3d/weights" in text()
    assert "COPY --from=weights /weights /opt/hy3d/weights" in text()
    assert "HEALTHCHECK" in text() and "/v2/health/ready" in text()
    for download in ("tencent/Hunyuan3D-2.1", "facebook/dinov2-giant", "RealESRGAN_x4plus.pth"):
        assert download in text()
    assert "numpy.__version__ < '2'" in text()


def test_image_serves_the_gpu_configs_and_fails_closed():
    env = env_values()
    assert env["HY3D_MODEL_CONFIG"] == "gpu" and env["HY3D_REQUIRE_WEIGHTS"] == "1"
    assert env["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
    command = entrypoint_command(env)
    assert command[:2] == ["tritonserver", "--model-repository=/opt/hy3d/model_repository"]
    assert env["HY3D_TRITON_HOME"] == "/opt/tritonserver"
    assert "--model-config-name=gpu" in command and "--model-control-mode=explicit" in command
    assert (REPO_ROOT / "model_repository" / "shape_dit" / "configs" / "gpu.pbtxt").is_file()


def test_rembg_runs_on_the_gpu_with_the_u2net_model_baked_in_at_its_documented_path():
    env = env_values()
    model = env["HY3D_REMBG_MODEL"]
    assert model == "/opt/hy3d/weights/u2net/u2net.onnx" and env["U2NET_HOME"] == str(Path(model).parent)
    assert re.search(r'-o /weights/u2net/u2net\.onnx "\$\{U2NET_URL\}"', text())
    assert re.search(r"^ARG U2NET_MD5=[0-9a-f]{32}$", text(), re.MULTILINE)
    assert 'echo "${U2NET_MD5}  /weights/u2net/u2net.onnx" | md5sum -c -' in text()
    assert '"onnxruntime-gpu==${ONNXRUNTIME_GPU_VERSION}"' in text()
    assert re.search(r"grep -vE '\^\([^)]*\bonnxruntime\b", text()), "the CPU onnxruntime must not be installed too"
    assert model in GPU_DOC.read_text()


def test_exit_timeout_is_the_drain_timeout_which_covers_the_longest_request():
    env = env_values()
    drain_s = int(env["HY3D_DRAIN_TIMEOUT_S"])
    assert drain_s >= int(settings.DRAIN_TIMEOUT_S.default)
    assert f"--exit-timeout-secs={drain_s}" in entrypoint_command(env)
    assert "--exit-timeout-secs=900" in entrypoint_command({**env, "HY3D_DRAIN_TIMEOUT_S": "900"})
    assert "--stop-timeout" in text()  # docker's own grace period must exceed it (header comment)


def test_extra_run_arguments_reach_tritonserver_and_a_zero_cache_is_left_out():
    env = env_values()
    assert f"--cache-config=local,size={env['HY3D_CACHE_BYTES']}" in entrypoint_command(env)
    command = entrypoint_command({**env, "HY3D_CACHE_BYTES": "0", "HY3D_MODEL_CONFIG": ""}, "--log-verbose=1")
    assert command[-1] == "--log-verbose=1"
    assert not any(arg.startswith(("--cache-config", "--model-config-name")) for arg in command)


@pytest.mark.parametrize("unread", ["hunyuan3d-vae-v2-1", "preprocessor_config.json", "text_encoder", "image_encoder"])
def test_nothing_that_inference_does_not_read_is_downloaded(unread):
    assert unread not in text().split("# is replaced by our own preprocessing; none of them is downloaded.")[1]
