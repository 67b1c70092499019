"""Shape-stage benchmark: denoising and volume decoding, ours and upstream's algorithm side by side.

Every baseline is upstream's algorithm re-created in the same process, on the same inputs and threads:

* DiT call: upstream concatenates the attention projection weights on every call and routes the MoE
  with one ``.nonzero()`` per expert (host synchronisation); ours fuses the weights once at load and
  dispatches the MoE with grouped matmuls (same velocities, checked);
* sampling: upstream calls the DiT at every scheduler step, including the last, zero-length one; ours
  skips that call (identical latents). That can save at most ``1 / steps`` of the calls, so the reported
  ratio is capped at ``steps / (steps - 1)`` (1.25x at 5 steps): a larger measurement is timing noise;
* volume decoding: upstream decodes the dense grid in chunks of 8000 points, all coordinates
  materialised first, recomputing the latent keys/values in every chunk. Ours: ``dense`` (keys/values
  once, chunk size by device; the same grid), ``hierarchical`` and ``flashvdm``, with their agreement
  with the dense grid: share of sign changes within one cell of a dense sign change (both ways),
  symmetric mean Chamfer distance between the mesh vertices in grid cells, and face counts.

Results go to ``benchmarks/results/bench_shape.{json,md}`` (``--output`` changes the file stem).

Usage::

    .venv/bin/python benchmarks/bench_shape.py [--device cpu|cuda] [--dtype float32|float16|bfloat16]
        [--threads N] [--repeats N] [--resolutions 256 384] [--full-size] [--output NAME]

``--full-size`` also times the full-size DiT step (CFG batch 2, random weights) and volume decoding with
the full-size VAE (random weights) at each resolution and decoder: meant for a GPU (``--device cuda``).
"""

from __future__ import annotations

import argparse
import copy
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
from scipy.spatial import cKDTree

from hy3dshape import Hunyuan3DDiTFlowMatchingPipeline
from hy3dshape.models.dit import HunYuanDiTPlain
from hy3dshape.models.vae import ShapeVAE
from hy3dshape.official_config import OFFICIAL_CONFIG
from hy3dshape.surface_extractors import MCSurfaceExtractor, fill_undecoded
from hy3dshape.volume_decoders import (
    DEFAULT_NUM_CHUNKS,
    FlashVDMVolumeDecoder,
    HierarchicalVolumeDecoder,
    VanillaVolumeDecoder,
    grid_axis,
    near_surface,
)

ROOT = Path(__file__).resolve().parents[1]
MODEL_ROOT = ROOT / "tests" / "data" / "shape" / "model"
TEST_IMAGE = ROOT / "tests" / "data" / "shape" / "test_image.png"
RESULTS_DIR = ROOT / "benchmarks" / "results"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
#: Contract defaults (client/hy3d_client/contract.py).
STEPS = 5
GUIDANCE_SCALE = 5.0
BOX_V = 1.01
SEED = 1234
#: Timed repeats of one DiT call (short; the median is reported).
DIT_CALL_REPEATS = 20

logger = logging.getLogger("bench_shape")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clock(device: torch.device) -> Callable[[], float]:
    """The timer of a run: wall time on CUDA; on the CPU the process's CPU time, which does not count
    the time other processes of a shared machine hold the cores (run with ``--threads 1``)."""
    return time.perf_counter if device.type == "cuda" else time.process_time


def timed(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: bool = True) -> tuple[float, Any]:
    """Median time (``clock``) of ``repeats`` calls (after one warm-up call unless ``warmup`` is false),
    and the last result."""
    result = fn() if warmup else None
    times = []
    now = clock(device)
    for _ in range(repeats):
        _sync(device)
        start = now()
        result = fn()
        _sync(device)
        times.append(now() - start)
    return statistics.median(times), result


def interleaved(first: Callable[[], Any], second: Callable[[], Any], device: torch.device,
                repeats: int) -> tuple[float, float]:
    """Median times of two functions timed alternately (so that load changes hit both alike)."""
    first(), second()
    times: tuple[list[float], list[float]] = ([], [])
    now = clock(device)
    for _ in range(repeats):
        for fn, bucket in ((first, times[0]), (second, times[1])):
            _sync(device)
            start = now()
            fn()
            _sync(device)
            bucket.append(now() - start)
    return statistics.median(times[0]), statistics.median(times[1])


# ------------------------------------------------------------------------------------------ baselines


def upstream_model(model: HunYuanDiTPlain) -> HunYuanDiTPlain:
    """A copy of the DiT that runs upstream's way: projections concatenated per call, MoE by ``.nonzero()``."""
    baseline = copy.deepcopy(model)
    for module in baseline.modules():
        if hasattr(module, "_fused_weight"):
            module._fused_weight = module._fused_bias = None
            module._fuse_requested = False
        if hasattr(module, "dispatch"):
            module.dispatch = "loop"
    return baseline


def upstream_denoise(pipe, model, latents, context, steps, guidance_scale):
    """Upstream's loop: one DiT call per scheduler step, the zero-length last step included."""
    pipe.scheduler.set_timesteps(steps, device=pipe.device)
    for timestep in pipe.scheduler.timesteps:
        model_input = torch.cat([latents, latents])
        t = timestep.to(latents.dtype).expand(model_input.shape[0]) / pipe.scheduler.num_train_timesteps
        v_cond, v_uncond = model(model_input, t, {"main": context}).chunk(2)
        latents = pipe.scheduler.step(v_uncond + guidance_scale * (v_cond - v_uncond), timestep, latents).prev_sample
    return latents


def upstream_dense_decode(tokens, geo_decoder, bounds, octree_resolution, num_chunks=DEFAULT_NUM_CHUNKS):
    """Upstream's dense decoding: all coordinates materialised, chunks of 8000 points, each chunk calling
    the geometry decoder on the latents (keys and values recomputed per chunk)."""
    axis = grid_axis(bounds, octree_resolution, tokens.device)
    xs, ys, zs = torch.meshgrid(axis, axis, axis, indexing="ij")
    points = torch.stack((xs, ys, zs), dim=-1).reshape(-1, 3).to(geo_decoder.query_proj.weight.dtype)
    logits = [geo_decoder(queries=points[None, start : start + num_chunks].expand(tokens.shape[0], -1, -1),
                          latents=tokens)[..., 0].float() for start in range(0, points.shape[0], num_chunks)]
    n = octree_resolution + 1
    return torch.cat(logits, dim=1).view(tokens.shape[0], n, n, n)


# ------------------------------------------------------------------------------------------ quality


def sign_change_agreement(grid: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """``(precision, recall)``: share of the points next to a sign change of ``grid`` that lie within one
    cell of a sign change of ``reference``, and the other way round."""
    ours = near_surface(torch.from_numpy(grid)[None], 0.0, 0.0)[0]
    dense = near_surface(torch.from_numpy(reference)[None], 0.0, 0.0)[0]

    def within_one_cell(mask: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.max_pool3d(mask[None, None].float(), 3, stride=1, padding=1)[0, 0] > 0

    precision = (ours & within_one_cell(dense)).sum().item() / max(1, ours.sum().item())
    recall = (dense & within_one_cell(ours)).sum().item() / max(1, dense.sum().item())
    return precision, recall


def chamfer_cells(vertices: np.ndarray, reference: np.ndarray, cell: float) -> float:
    """Symmetric mean nearest-neighbour distance between two vertex sets, in grid cells."""
    forward = cKDTree(reference).query(vertices)[0].mean()
    backward = cKDTree(vertices).query(reference)[0].mean()
    return float((forward + backward) / 2 / cell)


def quality(grid: torch.Tensor, dense_grid: np.ndarray, dense_mesh, resolution: int) -> dict[str, Any]:
    filled = fill_undecoded(grid[0].float().cpu().numpy())
    (mesh,) = MCSurfaceExtractor()(filled, 0.0, BOX_V, resolution)
    precision, recall = sign_change_agreement(filled, dense_grid)
    faces = 0 if mesh is None else len(mesh[1])
    return {
        "sign_change_precision": precision,
        "sign_change_recall": recall,
        "chamfer_cells": None if mesh is None else chamfer_cells(mesh[0], dense_mesh[0], 2 * BOX_V / resolution),
        "faces": faces,
        "faces_vs_dense": faces / max(1, len(dense_mesh[1])) - 1,
    }


# ------------------------------------------------------------------------------------------ runs


def bench_denoising(pipe, device: torch.device, dtype: torch.dtype, repeats: int) -> list[dict[str, Any]]:
    rows = []
    baseline = upstream_model(pipe.model)
    generator = torch.Generator().manual_seed(SEED)
    latents = pipe.prepare_latents(1, generator)
    context = torch.randn(2, pipe.model.text_len, pipe.model.blocks[0].attn2.to_k.in_features,
                          generator=generator).to(device=device, dtype=dtype)
    x, t = torch.cat([latents, latents]), torch.full((2,), 0.5, dtype=dtype, device=device)
    with torch.inference_mode():
        ours_v, base_v = pipe.model(x, t, {"main": context}), baseline(x, t, {"main": context})
        difference = (ours_v.float() - base_v.float()).abs().max().item()
        ours_s, base_s = interleaved(lambda: pipe.model(x, t, {"main": context}),
                                     lambda: baseline(x, t, {"main": context}), device, DIT_CALL_REPEATS)
        rows.append({"stage": "DiT call (CFG batch 2)", "ours_s": ours_s, "baseline_s": base_s,
                     "speedup": base_s / ours_s, "note": f"fused QKV + grouped MoE vs per-call concat + "
                     f".nonzero() routing; max velocity difference {difference:.1e}"})
        ours_s, base_s = interleaved(lambda: pipe.denoise(latents, context, STEPS, GUIDANCE_SCALE),
                                     lambda: upstream_denoise(pipe, pipe.model, latents, context, STEPS,
                                                              GUIDANCE_SCALE), device, repeats)
        same = torch.equal(pipe.denoise(latents, context, STEPS, GUIDANCE_SCALE),
                           upstream_denoise(pipe, pipe.model, latents, context, STEPS, GUIDANCE_SCALE))
        cap = STEPS / (STEPS - 1)
        measured = base_s / ours_s
        rows.append({"stage": f"denoise {STEPS} steps: skip the zero-length step", "ours_s": ours_s,
                     "baseline_s": base_s, "speedup": min(measured, cap), "measured_speedup": measured,
                     "note": f"{STEPS - 1} vs {STEPS} DiT calls, identical latents: {same}; at most "
                     f"x{cap:.2f} ({'capped, measured' if measured > cap else 'measured'} x{measured:.2f})"})
        ours_s, base_s = interleaved(lambda: pipe.denoise(latents, context, STEPS, GUIDANCE_SCALE),
                                     lambda: upstream_denoise(pipe, baseline, latents, context, STEPS,
                                                              GUIDANCE_SCALE), device, repeats)
        rows.append({"stage": f"denoise {STEPS} steps, all changes", "ours_s": ours_s, "baseline_s": base_s,
                     "speedup": base_s / ours_s, "note": "fused QKV, grouped MoE, skipped step vs upstream"})
    for row in rows:
        logger.info("%-50s ours %.4f s  baseline %.4f s  x%.2f", row["stage"], row["ours_s"], row["baseline_s"],
                    row["speedup"])
    return rows


def decoders() -> dict[str, Any]:
    return {"dense": VanillaVolumeDecoder(), "hierarchical": HierarchicalVolumeDecoder(),
            "flashvdm": FlashVDMVolumeDecoder(),
            "flashvdm (no KV selection)": FlashVDMVolumeDecoder(adaptive_kv_selection=False)}


def bench_decoding(tokens: torch.Tensor, geo_decoder, device: torch.device, resolutions: list[int],
                   with_quality: bool = True) -> list[dict[str, Any]]:
    rows = []
    with torch.inference_mode():
        for resolution in resolutions:
            base_s, base_grid = timed(lambda r=resolution: upstream_dense_decode(tokens, geo_decoder, BOX_V, r),
                                      device, 1, warmup=False)
            rows.append({"octree_resolution": resolution, "decoder": "upstream dense (8000/chunk, KV per chunk)",
                         "seconds": base_s, "speedup": 1.0, "decoded_points": (resolution + 1) ** 3})
            logger.info("R=%d upstream dense: %.2f s", resolution, base_s)
            dense_grid = base_grid[0].float().cpu().numpy()
            del base_grid
            dense_mesh = MCSurfaceExtractor()(dense_grid, 0.0, BOX_V, resolution)[0] if with_quality else None
            for name, decoder in decoders().items():
                seconds, grid = timed(lambda d=decoder, r=resolution: d(tokens, geo_decoder, BOX_V, None, r), device,
                                      1, warmup=False)
                row = {"octree_resolution": resolution, "decoder": name, "seconds": seconds,
                       "speedup": base_s / seconds,
                       "decoded_points": getattr(decoder, "last_decoded_points", None) or (resolution + 1) ** 3}
                if name == "dense":
                    row["max_abs_logit_difference"] = float(np.abs(grid[0].float().cpu().numpy() - dense_grid).max())
                if getattr(decoder, "kv_selection", None) is not None:
                    row["kv_blocks"] = dict(decoder.kv_selection.stats)
                if with_quality and dense_mesh is not None:
                    row.update(quality(grid, dense_grid, dense_mesh, resolution))
                    row["dense_faces"] = len(dense_mesh[1])
                logger.info("R=%d %s: %.2f s, x%.2f %s", resolution, name, seconds, row["speedup"],
                            {k: v for k, v in row.items() if k not in ("octree_resolution", "decoder", "seconds")})
                rows.append(row)
                del grid
    return rows


def _random_init(module: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """Full-size modules built on the meta device and filled with small random weights on ``device``."""
    module = module.to_empty(device=device).to(dtype)
    generator = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if name.endswith("bias"):
                parameter.zero_()
            elif parameter.ndim == 1:
                parameter.fill_(1.0)
            else:
                parameter.normal_(0.0, parameter.shape[-1] ** -0.5, generator=generator)
    return module.eval()


def bench_full_size(device: torch.device, dtype: torch.dtype, resolutions: list[int], compile_dit: bool
                    ) -> dict[str, Any]:
    """Full-size DiT step (CFG batch 2) and full-size VAE volume decoding, random weights."""
    result: dict[str, Any] = {}
    with torch.device("meta"):
        model = HunYuanDiTPlain(**OFFICIAL_CONFIG["model"]["params"])
    model = _random_init(model, device, dtype).fuse_weights()
    if compile_dit:
        model.compile(mode="reduce-overhead" if device.type == "cuda" else "default", dynamic=False)
    params = OFFICIAL_CONFIG["model"]["params"]
    x = torch.randn(2, params["input_size"], params["in_channels"], device=device, dtype=dtype)
    context = torch.randn(2, params["text_len"], params["context_dim"], device=device, dtype=dtype)
    t = torch.full((2,), 0.5, device=device, dtype=dtype)
    with torch.inference_mode():
        seconds, _ = timed(lambda m=model: m(x, t, {"main": context}), device, 3)
    result["dit_step_s"] = seconds
    result["denoise_5_steps_s"] = 4 * seconds
    logger.info("full-size DiT step: %.3f s", seconds)
    del model
    with torch.device("meta"):
        vae = ShapeVAE(**OFFICIAL_CONFIG["vae"]["params"])
    vae = _random_init(vae, device, dtype)
    with torch.inference_mode():
        latents = torch.randn(1, vae.num_latents, vae.embed_dim, device=device, dtype=dtype)
        seconds, tokens = timed(lambda: vae(latents), device, 1)
        result["vae_transformer_s"] = seconds
        result["decoding"] = bench_decoding(tokens, vae.geo_decoder, device, resolutions, with_quality=False)
    return result


def stage_rows(denoising: list[dict[str, Any]], decoding: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flat ``{"stage", "ours_s", "baseline_s", "speedup"}`` rows, the layout ``benchmarks/capacity.py`` reads
    (``"volume decode dense, R=256"``: its R exponent is fitted from the dense rows)."""
    rows = [{key: row[key] for key in ("stage", "ours_s", "baseline_s", "speedup")} for row in denoising]
    upstream = {row["octree_resolution"]: row["seconds"] for row in decoding if row["decoder"].startswith("upstream")}
    for row in decoding:
        if not row["decoder"].startswith("upstream"):
            resolution = row["octree_resolution"]
            rows.append({"stage": f"volume decode {row['decoder']}, R={resolution}", "ours_s": row["seconds"],
                         "baseline_s": upstream.get(resolution), "speedup": row["speedup"]})
    return rows


def _markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [
        "# Shape stage benchmark",
        "",
        f"Device {env['device']}, dtype {env['dtype']}, torch {env['torch']}, {env['threads']} CPU thread(s), "
        f"{env['platform']}; times are {env['clock']}. Tiny checkpoint (`tests/data/shape/model`). Baselines are upstream's algorithms "
        "in the same process, same inputs, same threads (see the script's docstring). Denoising: median of "
        f"{env['repeats']} interleaved runs; volume decoding: one run each.",
        "",
        "## Denoising",
        "",
        "| stage | ours (s) | upstream (s) | speed-up | note |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for row in report["tiny"]["denoising"]:
        lines.append(f"| {row['stage']} | {row['ours_s']:.4f} | {row['baseline_s']:.4f} | x{row['speedup']:.2f} | "
                     f"{row['note']} |")
    lines += ["", "## Volume decoding", "",
              "Agreement with the dense grid: share of the points next to a sign change that lie within one "
              "cell of a dense sign change (ours -> dense / dense -> ours), symmetric mean Chamfer distance "
              "between the mesh vertices in grid cells, faces against the dense mesh.", "",
              "| R | decoder | seconds | speed-up vs upstream | decoded points | sign changes within 1 cell | "
              "Chamfer (cells) | faces (vs dense) |",
              "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in report["tiny"]["decoding"]:
        agreement = chamfer = faces = ""
        if "sign_change_precision" in row:
            agreement = f"{row['sign_change_precision']:.4f} / {row['sign_change_recall']:.4f}"
            chamfer = "" if row["chamfer_cells"] is None else f"{row['chamfer_cells']:.3f}"
            faces = f"{row['faces']:,} ({100 * row['faces_vs_dense']:+.2f} %)"
        lines.append(f"| {row['octree_resolution']} | {row['decoder']} | {row['seconds']:.2f} | "
                     f"x{row['speedup']:.1f} | {row['decoded_points']:,} | {agreement} | {chamfer} | {faces} |")
    if "full_size" in report:
        full = report["full_size"]
        lines += ["", "## Full size (random weights)", "",
                  f"* DiT step (CFG batch 2, 4097 tokens): {full['dit_step_s']:.3f} s; 5 steps (4 calls): "
                  f"{full['denoise_5_steps_s']:.2f} s", f"* VAE transformer: {full['vae_transformer_s']:.3f} s", "",
                  "| R | decoder | seconds | speed-up vs upstream | decoded points |",
                  "| ---: | --- | ---: | ---: | ---: |"]
        for row in full["decoding"]:
            lines.append(f"| {row['octree_resolution']} | {row['decoder']} | {row['seconds']:.3f} | "
                         f"x{row['speedup']:.1f} | {row['decoded_points']:,} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--resolutions", type=int, nargs="+", default=[256, 384])
    parser.add_argument("--full-size", action="store_true", help="also time the full-size DiT and VAE (GPU)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the full-size DiT")
    parser.add_argument("--skip-tiny", action="store_true")
    parser.add_argument("--output", default="bench_shape", help="file stem under benchmarks/results/")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    report: dict[str, Any] = {
        "environment": {"device": str(device), "dtype": args.dtype, "torch": torch.__version__,
                        "threads": torch.get_num_threads(), "platform": platform.platform(),
                        "repeats": args.repeats, "numpy": np.__version__,
                        "clock": "wall seconds" if device.type == "cuda" else "CPU seconds of the process",
                        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None},
    }
    if not args.skip_tiny:
        pipe = Hunyuan3DDiTFlowMatchingPipeline.from_pretrained(MODEL_ROOT, device=device, dtype=dtype)
        denoising = bench_denoising(pipe, device, dtype, args.repeats)
        with Image.open(TEST_IMAGE) as opened:
            image = opened.convert("RGBA")
        with torch.inference_mode():
            (latents,) = pipe(image=image, num_inference_steps=STEPS, guidance_scale=GUIDANCE_SCALE,
                              generator=torch.Generator().manual_seed(SEED), output_type="latent")
            tokens = pipe.vae(latents[None] * (1.0 / pipe.vae.scale_factor))
        decoding = bench_decoding(tokens, pipe.vae.geo_decoder, device, args.resolutions)
        report["tiny"] = {"denoising": denoising, "decoding": decoding, "stages": stage_rows(denoising, decoding)}
    else:
        report["tiny"] = {"denoising": [], "decoding": [], "stages": []}
    if args.full_size:
        report["full_size"] = bench_full_size(device, dtype, args.resolutions, args.compile)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{args.output}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS_DIR / f"{args.output}.md").write_text(_markdown(report))
    logger.info("wrote %s and %s", RESULTS_DIR / f"{args.output}.json", RESULTS_DIR / f"{args.output}.md")


if __name__ == "__main__":
    main()
