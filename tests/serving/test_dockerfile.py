"""Dockerfile.triton: lint-clean (hadolint), pinned NGC base, weights wired to HY3D_WEIGHTS_DIR, health check."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOCKERFILE = Path(__file__).resolve().parents[2] / "Dockerfile.triton"
HADOLINT = Path(sys.executable).with_name("hadolint")


def test_hadolint_reports_nothing():
    result = subprocess.run([str(HADOLINT), str(DOCKERFILE)], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0 and result.stdout.strip() == "", result.stdout + result.stderr


def test_base_image_is_a_pinned_ngc_tritonserver_python_image():
    match = re.search(r"^ARG TRITON_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert match and re.fullmatch(r"nvcr\.io/nvidia/tritonserver:\d{2}\.\d{2}-py3", match.group(1))


def test_image_serves_the_repository_with_the_baked_weights_and_checks_readiness():
    text = DOCKERFILE.read_text()
    assert "HY3D_WEIGHTS_DIR=/opt/hy3d/weights" in text
    assert "COPY --from=weights /weights /opt/hy3d/weights" in text
    assert 'ENTRYPOINT ["tritonserver", "--model-repository=/opt/hy3d/model_repository"' in text
    assert "HEALTHCHECK" in text and "/v2/health/ready" in text
    for download in ("tencent/Hunyuan3D-2.1", "facebook/dinov2-giant", "RealESRGAN_x4plus.pth"):
        assert download in text
    assert "numpy.__version__ < '2'" in text
