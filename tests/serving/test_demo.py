"""scripts/demo: writes the GLB for an image and prints its path (here against the session's server)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .glb_checks import face_count

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO = REPO_ROOT / "scripts" / "demo"


@pytest.mark.integration
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_demo_writes_the_glb_and_prints_its_path(triton_server, tmp_path, protocol):
    output = tmp_path / "demo.glb"
    url = triton_server.http_url if protocol == "http" else triton_server.grpc_url
    result = subprocess.run(
        [str(DEMO), "--url", url, "--protocol", protocol, "--output", str(output), "--octree-resolution", "64",
         "--face-count", "1000", "--no-texture"],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(output.resolve())
    assert output.read_bytes()[:4] == b"glTF" and face_count(output.read_bytes()) <= 1000
    assert "paint=none" in result.stderr


def test_demo_refuses_an_out_of_range_parameter_before_sending(tmp_path):
    result = subprocess.run([str(DEMO), "--url", "127.0.0.1:1", "--octree-resolution", "100000"],
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 2
    assert "octree_resolution: 100000 is out of range; expected an integer in [16, 512]" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
