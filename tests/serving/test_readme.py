"""README.md: its reference tables equal the generated ones, and its client snippets work against a live server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pygltflib
import pytest

from hy3d_serving import settings
from hy3d_tooling import docs

REPO_ROOT = Path(__file__).resolve().parents[2]
README = REPO_ROOT / "README.md"


def section(marker: str) -> str:
    match = re.search(rf"<!-- {marker}:start -->\n(.*?)<!-- {marker}:end -->", README.read_text(), re.DOTALL)
    assert match, f"README.md lacks the {marker} markers"
    return match.group(1).strip()


def code_block(marker: str) -> str:
    match = re.fullmatch(r"```\w+\n(.*)```", section(marker), re.DOTALL)
    assert match, f"{marker} is not one fenced code block"
    return match.group(1)


def test_contract_table_matches_the_contract_module():
    assert section("contract-table") == docs.contract_table()


def test_settings_table_matches_the_settings_module():
    assert section("settings-table") == docs.settings_table()


def test_limits_table_matches_the_named_limits():
    assert section("limits-table") == docs.limits_table()


def test_engine_settings_listed_in_the_table_are_the_ones_the_engines_read():
    from hy3dshape import rembg

    assert settings.REMBG_MODEL.env == rembg.MODEL_PATH_ENV


def test_readme_names_the_two_commands_and_ci_runs_the_test_command():
    text = README.read_text()
    assert "scripts/demo    # 1." in text and "scripts/test    # 2." in text
    assert 'scripts/test" "$@"' in (REPO_ROOT / ".ci" / "run").read_text()
    for section_title in ("## Client", "## Shape engine", "## Texture engine", "## Benchmarks"):
        assert section_title in text


def assert_textured_glb(path: Path) -> None:
    gltf = pygltflib.GLTF2.load_from_bytes(path.read_bytes())
    assert gltf.meshes and gltf.materials[0].pbrMetallicRoughness.baseColorTexture is not None


@pytest.mark.integration
def test_python_snippet_writes_a_glb(triton_server, tmp_path):
    code = code_block("snippet:python").replace("127.0.0.1:8000", triton_server.http_url)
    code = code.replace('"examples/mug.png"', repr(str(REPO_ROOT / "examples" / "mug.png")))
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            timeout=900, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:3] == ["shape=builtin-silhouette;paint=builtin-projection", "True", "42"]
    assert_textured_glb(tmp_path / "mug.glb")


@pytest.mark.integration
def test_curl_snippet_writes_a_glb(triton_server, tmp_path):
    output = tmp_path / "curl.glb"
    env = {**os.environ, "URL": triton_server.http_url, "OUTPUT": str(output)}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", code_block("snippet:curl")], cwd=REPO_ROOT,
                            env=env, capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr
    assert '"name":"SEED_USED"' in result.stdout and "[42]" in result.stdout
    assert_textured_glb(output)
