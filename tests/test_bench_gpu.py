"""``benchmarks/bench_gpu.py`` keeps working: ``--tiny --device cpu`` runs the whole pipeline and writes its
report, and the full-size weights it writes have exactly the official keys and shapes.

The full-size run itself needs a GPU (docs/gpu.md); the tiny run executes the same code (random weights in
the official layout, our real loaders, every phase) on the tiny architectures of the test checkpoints.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH = REPO_ROOT / "benchmarks" / "bench_gpu.py"
KEYS = REPO_ROOT / "tests" / "data" / "keys"
#: Every phase the report times, in order.
PHASES = ("shape:load", "shape:dino", "shape:denoise", "shape:volume_decode", "shape:marching_cubes",
          "shape:postprocess", "paint:load", "paint:uv", "paint:render", "paint:dino", "paint:diffusion",
          "paint:upscale", "paint:bake", "paint:inpaint", "export")
#: Seconds the tiny CPU run may take on a busy 2-core machine (a hang guard, not a speed promise).
TINY_RUN_TIMEOUT_S = 900


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "gpu_tiny.json"
    result = subprocess.run([sys.executable, str(BENCH), "--tiny", "--device", "cpu", "--out", str(out)],
                            capture_output=True, text=True, timeout=TINY_RUN_TIMEOUT_S, check=False, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert out.with_suffix(".md").read_text().startswith("# bench_gpu")
    return json.loads(out.read_text())


@pytest.mark.slow
def test_tiny_cpu_run_reports_every_phase_with_seconds_and_no_gpu_peak(tiny_report):
    assert (tiny_report["device"], tiny_report["dtype"]) == ("cpu", "float32")
    assert tuple(tiny_report["stages"]) == PHASES
    for name, entry in tiny_report["stages"].items():
        assert entry["seconds"] >= 0 and entry["peak_gib"] is None, name
    assert tiny_report["stages"]["shape:denoise"]["steps"] == 5
    assert tiny_report["stages"]["paint:diffusion"]["views"] == 6
    assert tiny_report["stages"]["export"]["glb_bytes"] > 0
    totals = tiny_report["summary"]
    assert totals["shape_seconds"] > 0 and totals["texture_seconds"] > 0 and totals["peak_gib"] is None


def _manifest(path: Path) -> dict[str, tuple[int, ...]]:
    rows = {}
    for line in path.read_text().splitlines():
        key, shape = line.split("\t")
        rows[key] = tuple(int(size) for size in shape.strip("[]").split(",") if size.strip())
    return rows


@pytest.mark.slow
def test_full_size_weights_have_the_official_keys_and_shapes():
    sys.path.insert(0, str(BENCH.parent))
    import bench_gpu

    files = {weight.path: weight for weight in bench_gpu.full_size_layout().weights}
    shape = files["hunyuan3d-dit-v2-1/model.fp16.ckpt"].entries
    assert shape["model"] == _manifest(KEYS / "shape" / "dit.tsv")
    assert shape["conditioner"] == _manifest(KEYS / "shape" / "conditioner.tsv")
    vae = _manifest(KEYS / "shape" / "vae.tsv")
    assert shape["vae"] == {key: s for key, s in vae.items() if not key.startswith(("encoder.", "pre_kl."))}
    paint = "hunyuan3d-paintpbr-v2-1"
    assert files[f"{paint}/unet/diffusion_pytorch_model.bin"].entries[None] == _manifest(KEYS / "paint" / "unet_2p5d.tsv")
    assert files[f"{paint}/vae/diffusion_pytorch_model.bin"].entries[None] == _manifest(KEYS / "paint" / "vae.tsv")
    assert files["RealESRGAN_x4plus.pth"].entries["params_ema"] == _manifest(
        KEYS / "paint" / "realesrgan_x4plus_rrdbnet.tsv")
    dino = files["dinov2-giant/model.safetensors"]
    assert math.isclose(dino.num_elements, 1.136e9, rel_tol=1e-3)  # facebook/dinov2-giant: 1.14 B parameters
