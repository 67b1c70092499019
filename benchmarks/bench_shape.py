"""Shape-stage benchmark: per-stage timings on the tiny checkpoint, baseline and ours side by side.

Baselines are upstream's strategies, re-created here in the same process:

* sampling: upstream calls the DiT at every scheduler step, including the last, zero-length one;
  ours skips that call (identical latents);
* volume decoding memory: upstream materialises all ``(R + 1)^3`` query coordinates before chunking;
  ours computes each chunk's coordinates from flat indices (identical grid);
* volume decoding time: dense grid (upstream default) vs the opt-in hierarchical decoder.

Results go to ``benchmarks/results/bench_shape.{json,md}``. Peak memory on the CPU is the process's
peak RSS (``VmHWM``, reset through ``/proc/self/clear_refs``, after ``malloc_trim``) above the RSS
before the call; on CUDA it is ``torch.cuda.max_memory_allocated`` above the allocation before the call.

Usage::

    .venv/bin/python benchmarks/bench_shape.py [--device cpu|cuda] [--dtype float32|float16|bfloat16]
        [--threads N] [--repeats N] [--resolutions 64 128 192 256] [--full-size-block]

``--full-size-block`` also times one dense and one MoE block of the full-size DiT (random weights,
about 1.5 GB in float32) on the official shapes and extrapolates one DiT call (15 dense + 6 MoE blocks).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from hy3dshape import Hunyuan3DDiTFlowMatchingPipeline, MCSurfaceExtractor
from hy3dshape.models.dit import DiTBlock
from hy3dshape.official_config import OFFICIAL_CONFIG
from hy3dshape.volume_decoders import HierarchicalVolumeDecoder, VanillaVolumeDecoder, grid_axis

ROOT = Path(__file__).resolve().parents[1]
MODEL_ROOT = ROOT / "tests" / "data" / "shape" / "model"
TEST_IMAGE = ROOT / "tests" / "data" / "shape" / "test_image.png"
RESULTS_DIR = ROOT / "benchmarks" / "results"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
#: Contract defaults used for the end-to-end run (client/hy3d_client/contract.py).
STEPS = 5
GUIDANCE_SCALE = 5.0
NUM_CHUNKS = 8000
#: Band of the thin-band hierarchical run (the tiny model's logits are flat; see docs/shape.md).
THIN_BAND = 0.05

logger = logging.getLogger("bench_shape")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: bool = True) -> tuple[float, Any]:
    """Median wall time of ``repeats`` calls (after one warm-up call unless ``warmup`` is false) and the
    last result."""
    result = fn() if warmup else None
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        result = fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def _release_free_heap() -> None:
    """Return freed heap pages to the OS (glibc ``malloc_trim``) so an allocation shows up in RSS again."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        logger.debug("malloc_trim unavailable; CPU peak memory may be underestimated")


def peak_memory_mib(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """Peak memory above the level before the call, in MiB (see the module docstring)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        result = fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20, result
    _release_free_heap()
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kib("VmRSS")
    result = fn()
    return (_status_kib("VmHWM") - before) / 1024, result


def baseline_dense_decode(tokens, geo_decoder, bounds, num_chunks, octree_resolution):
    """Upstream's dense decoding: all coordinates materialised first, then decoded chunk by chunk."""
    axis = grid_axis(bounds, octree_resolution, tokens.device)
    xs, ys, zs = torch.meshgrid(axis, axis, axis, indexing="ij")
    points = torch.stack((xs, ys, zs), dim=-1).reshape(-1, 3).to(geo_decoder.query_proj.weight.dtype)
    logits = [geo_decoder(queries=points[None, start : start + num_chunks].expand(tokens.shape[0], -1, -1),
                          latents=tokens)[..., 0].float() for start in range(0, points.shape[0], num_chunks)]
    n = octree_resolution + 1
    return torch.cat(logits, dim=1).view(tokens.shape[0], n, n, n)


def baseline_denoise(pipe, latents, context, steps, guidance_scale):
    """Upstream's loop: one DiT call per scheduler step, the zero-length last step included."""
    pipe.scheduler.set_timesteps(steps, device=pipe.device)
    for timestep in pipe.scheduler.timesteps:
        model_input = torch.cat([latents, latents])
        t = timestep.to(latents.dtype).expand(model_input.shape[0]) / pipe.scheduler.num_train_timesteps
        v_cond, v_uncond = pipe.model(model_input, t, {"main": context}).chunk(2)
        latents = pipe.scheduler.step(v_uncond + guidance_scale * (v_cond - v_uncond), timestep, latents).prev_sample
    return latents


def bench_tiny(device: torch.device, dtype: torch.dtype, repeats: int, resolutions: list[int]) -> dict[str, Any]:
    pipe = Hunyuan3DDiTFlowMatchingPipeline.from_pretrained(MODEL_ROOT, device=device, dtype=dtype)
    with Image.open(TEST_IMAGE) as opened:
        image = opened.convert("RGBA")
    rows: list[dict[str, Any]] = []

    def add(stage: str, ours_s: float, baseline_s: float | None = None, note: str = "") -> None:
        ratio = None if baseline_s is None else baseline_s / ours_s
        rows.append({"stage": stage, "ours_s": ours_s, "baseline_s": baseline_s, "speedup": ratio, "note": note})
        logger.info("%-40s ours %.4f s%s", stage, ours_s, "" if ratio is None else f"  baseline {baseline_s:.4f} s"
                    f"  x{ratio:.2f}")

    with torch.inference_mode():
        seconds, processed = timed(lambda: pipe.image_processor(image)["image"], device, repeats)
        add("preprocess (ImageProcessorV2)", seconds)
        seconds, context = timed(lambda: pipe.encode_condition(processed, True), device, repeats)
        add("conditioner (DINOv2, + zeros)", seconds)
        latents = pipe.prepare_latents(1, torch.Generator().manual_seed(1234))
        t = torch.full((2,), 0.5, dtype=dtype, device=device)
        seconds, _ = timed(lambda: pipe.model(torch.cat([latents, latents]), t, {"main": context}), device, repeats)
        add("DiT forward (CFG batch of 2)", seconds)
        ours_s, ours_latents = timed(lambda: pipe.denoise(latents, context, STEPS, GUIDANCE_SCALE), device, repeats)
        base_s, base_latents = timed(lambda: baseline_denoise(pipe, latents, context, STEPS, GUIDANCE_SCALE),
                                     device, repeats)
        assert torch.equal(ours_latents, base_latents), "skipping the zero-length step must not change latents"
        add(f"denoise, {STEPS} steps", ours_s, base_s, f"{STEPS - 1} vs {STEPS} DiT calls, identical latents")
        seconds, tokens = timed(lambda: pipe.vae(ours_latents * (1.0 / pipe.vae.scale_factor)), device, repeats)
        add("VAE decode (latents -> tokens)", seconds)

        memory_rows = []
        extractor = MCSurfaceExtractor()
        for resolution in resolutions:
            def ours(resolution=resolution):
                return VanillaVolumeDecoder()(tokens, pipe.vae.geo_decoder, 1.01, NUM_CHUNKS, resolution)

            def baseline(resolution=resolution):
                return baseline_dense_decode(tokens, pipe.vae.geo_decoder, 1.01, NUM_CHUNKS, resolution)

            def hierarchical(band, resolution=resolution):
                return HierarchicalVolumeDecoder(band=band)(tokens, pipe.vae.geo_decoder, 1.01, NUM_CHUNKS,
                                                             resolution)

            ours()  # warm-up: first-call allocations of the decoder are not part of the footprint
            ours_mib, grid = peak_memory_mib(ours, device)
            base_mib, base_grid = peak_memory_mib(baseline, device)
            assert torch.equal(grid, base_grid), "chunk-wise coordinates must give the same grid"
            del base_grid
            memory_rows.append({"octree_resolution": resolution, "points": (resolution + 1) ** 3,
                                "grid_mib": 4 * (resolution + 1) ** 3 / 2**20, "ours_peak_mib": ours_mib,
                                "baseline_peak_mib": base_mib})
            logger.info("R=%d peak memory: ours %.1f MiB, baseline %.1f MiB", resolution, ours_mib, base_mib)
            # Volume decoding is long and was warmed up above: time it without another warm-up call.
            dense_s, _ = timed(ours, device, max(1, repeats // 3), warmup=False)
            add(f"volume decode dense, R={resolution}", dense_s)
            if len(HierarchicalVolumeDecoder().levels(resolution)) == 1:
                logger.info("R=%d is a single hierarchical level (same computation as dense); skipped", resolution)
            for band, label in ((0.95, "default band 0.95"), (THIN_BAND, f"band {THIN_BAND}")):
                if len(HierarchicalVolumeDecoder().levels(resolution)) == 1:
                    break
                fine_s, fine_grid = timed(lambda band=band: hierarchical(band), device, max(1, repeats // 3),
                                          warmup=False)
                same_sign = bool(torch.equal(fine_grid > 0, grid > 0))
                add(f"volume decode hierarchical ({label}), R={resolution}", fine_s, dense_s,
                    f"levels {HierarchicalVolumeDecoder().levels(resolution)}, same signs as dense: {same_sign}")
            seconds, _ = timed(lambda grid=grid, resolution=resolution: extractor(grid, 0.0, 1.01, resolution),
                               device, max(1, repeats // 3))
            add(f"marching cubes, R={resolution}", seconds)
            del grid

        e2e_resolution = min(resolutions)
        seconds, _ = timed(lambda: pipe(image=image, num_inference_steps=STEPS, guidance_scale=GUIDANCE_SCALE,
                                        generator=torch.Generator().manual_seed(1234),
                                        octree_resolution=e2e_resolution), device, repeats)
        add(f"end to end, {STEPS} steps, R={e2e_resolution}", seconds)
    return {"stages": rows, "memory": memory_rows}


def bench_full_size_blocks(device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """One dense and one MoE block of the full-size DiT on the official shapes (CFG batch of 2)."""
    params = OFFICIAL_CONFIG["model"]["params"]
    hidden, tokens = params["hidden_size"], params["input_size"] + 1
    result: dict[str, Any] = {}
    torch.manual_seed(0)
    for kind, use_moe in (("dense", False), ("moe", True)):
        block = DiTBlock(hidden, params["context_dim"], params["num_heads"], mlp_ratio=4.0, qkv_bias=False,
                         qk_norm=True, skip_connection=True, use_moe=use_moe, num_experts=params["num_experts"],
                         moe_top_k=params["moe_top_k"]).to(device=device, dtype=dtype).eval()
        x = torch.randn(2, tokens, hidden, device=device, dtype=dtype)
        skip = torch.randn_like(x)
        context = torch.randn(2, params["text_len"], params["context_dim"], device=device, dtype=dtype)
        with torch.inference_mode():
            seconds, _ = timed(lambda block=block, x=x, skip=skip, context=context: block(x, context, skip), device, 1,
                               warmup=False)
        result[f"{kind}_block_s"] = seconds
        logger.info("full-size %s block: %.2f s", kind, seconds)
        del block
    moe_layers = params["num_moe_layers"]
    result["dit_forward_estimate_s"] = (params["depth"] - moe_layers) * result["dense_block_s"] + moe_layers * result[
        "moe_block_s"]
    return result


def _markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [
        "# Shape stage benchmark",
        "",
        f"Device {env['device']}, dtype {env['dtype']}, torch {env['torch']}, {env['threads']} CPU thread(s), "
        f"{env['platform']}. Tiny checkpoint (`tests/data/shape/model`), median of {env['repeats']} runs "
        "(volume decoding and full-size blocks: one run).",
        "",
        "| stage | ours (s) | baseline (s) | speed-up | note |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for row in report["tiny"]["stages"]:
        baseline = "" if row["baseline_s"] is None else f"{row['baseline_s']:.4f}"
        speedup = "" if row["speedup"] is None else f"x{row['speedup']:.2f}"
        lines.append(f"| {row['stage']} | {row['ours_s']:.4f} | {baseline} | {speedup} | {row['note']} |")
    lines += ["", "Peak memory of dense volume decoding above the level before the call (tiny model):", "",
              "| R | points | output grid (MiB) | ours peak (MiB) | baseline peak (MiB) |",
              "| ---: | ---: | ---: | ---: | ---: |"]
    for row in report["tiny"]["memory"]:
        lines.append(f"| {row['octree_resolution']} | {row['points']:,} | {row['grid_mib']:.1f} | "
                     f"{row['ours_peak_mib']:.1f} | {row['baseline_peak_mib']:.1f} |")
    if "full_size" in report:
        full = report["full_size"]
        lines += ["", "Full-size DiT (official shapes, random weights, CFG batch 2, 4097 tokens):", "",
                  f"* dense block {full['dense_block_s']:.2f} s, MoE block {full['moe_block_s']:.2f} s",
                  f"* one DiT call (15 dense + 6 MoE blocks), estimated: {full['dit_forward_estimate_s']:.1f} s"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--resolutions", type=int, nargs="+", default=[64, 128, 192, 256])
    parser.add_argument("--full-size-block", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    report: dict[str, Any] = {
        "environment": {"device": str(device), "dtype": args.dtype, "torch": torch.__version__,
                        "threads": torch.get_num_threads(), "platform": platform.platform(),
                        "repeats": args.repeats, "numpy": np.__version__},
        "tiny": bench_tiny(device, dtype, args.repeats, args.resolutions),
    }
    if args.full_size_block:
        report["full_size"] = bench_full_size_blocks(device, dtype)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "bench_shape.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS_DIR / "bench_shape.md").write_text(_markdown(report))
    logger.info("wrote %s and %s", RESULTS_DIR / "bench_shape.json", RESULTS_DIR / "bench_shape.md")


if __name__ == "__main__":
    main()
