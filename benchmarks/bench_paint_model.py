"""Benchmark: the neural half of the texture stage (UNet 2.5D, multiview diffusion, pipeline stages).

Two parts, in one process:

1. **UNet 2.5D per denoising step**, three ways, same inputs:

   * **upstream layout** - what upstream's pipeline feeds the UNet: the three CFG branches
     (u, r, f) in one batch of 3, and the reference latents repeated 3 times, so the reference
     stream (run once, in step 0) also runs on a batch of 3;
   * **ours (parity)** - ``MultiviewPBRDiffusionPipeline.denoise`` default: the same 3 branches,
     the reference stream on batch 1 (its features are shared by the branches; identical numbers);
   * **ours (fast_guidance)** - only the u and f branches (batch 2): the r branch cancels because
     upstream's per-view scales are all 1 (``u + g (r - u) + g (f - r) = u + g (f - u)``).

   Reported: step 0 (which also runs the reference stream, the voxel indices and the DINO
   projection) and the mean of the following steps (best of ``--repeats`` interleaved rounds), the ratios to the upstream layout, the largest
   difference of the guided prediction to the upstream layout's, and the peak memory (CUDA:
   ``max_memory_allocated``; CPU: the process's peak RSS, which only grows).

2. **Pipeline stages** (tiny weights only): wall time of each stage of ``Hunyuan3DPaintPipeline``
   on the tiny checkpoint of the tests (``tests/paint/tiny_weights.py``) and the parity mesh.

Modes:

* default: the tiny checkpoint (``tests/data/paint/model``), 6 views at 64 px, on the CPU;
* ``--full-size``: SD-2.1-sized UNet 2.5D (1.96 B parameters, ``unet_config_used.json``) with
  seeded random weights, ``--views`` views at ``--view-size`` (default 6 at 512, latent 64), in
  fp16 on CUDA (``--device cuda``). Meant for a GPU: on a CPU one step takes minutes.

Writes ``benchmarks/results/paint_model_<mode>_<device>.json`` and ``.md``.

    .venv/bin/python benchmarks/bench_paint_model.py                      # tiny, CPU
    .venv/bin/python benchmarks/bench_paint_model.py --device cuda --full-size
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # for tests.paint.tiny_weights

from hy3dpaint.models.unet_2p5d import UNet2p5DConditionModel  # noqa: E402

RESULTS_DIR = REPO / "benchmarks" / "results"
PAINT_DATA = REPO / "tests" / "data" / "paint"
TINY_UNET = PAINT_DATA / "model" / "hunyuan3d-paintpbr-tiny" / "unet"
FULL_SIZE_CONFIG = REPO / "tests" / "data" / "keys" / "paint" / "unet_config_used.json"
#: Defaults of each mode: views, view size (pixels), timed steps after step 0.
TINY_DEFAULTS = dict(views=6, view_size=64, steps=10)
FULL_SIZE_DEFAULTS = dict(views=6, view_size=512, steps=3)
#: Diffusion timesteps used for the timed calls (the first two of 15 trailing steps).
STEP0_TIMESTEP, LATER_TIMESTEP = 999, 932
GUIDANCE_SCALE = 3.0
#: UNet layouts compared, with their CFG branches in batch order.
VARIANTS = {"upstream layout": ("uncond", "ref", "full"), "ours (parity)": ("uncond", "ref", "full"),
            "ours (fast_guidance)": ("uncond", "full")}
#: Random full-size weights: standard deviation and seed.
RANDOM_WEIGHT_STD = 0.02
SEED = 0
#: Render and texture sizes of the tiny pipeline run.
TINY_PIPELINE_SIZES = dict(resolution=64, render_size=128, texture_size=128)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, function: Callable[[], object]) -> tuple[float, object]:
    synchronize(device)
    start = time.perf_counter()
    result = function()
    synchronize(device)
    return time.perf_counter() - start, result


def peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux: KiB


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def load_unet(full_size: bool, device: torch.device, dtype: torch.dtype) -> UNet2p5DConditionModel:
    if not full_size:
        return UNet2p5DConditionModel.from_pretrained(TINY_UNET, device=device, dtype=dtype)
    config = json.loads(FULL_SIZE_CONFIG.read_text(encoding="utf-8"))
    model = UNet2p5DConditionModel.from_config(config, device="meta").to_empty(device=device)
    generator = torch.Generator(device=device).manual_seed(SEED)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.zero_()
            elif parameter.ndim == 1:  # norm weights
                parameter.fill_(1.0)
            else:
                parameter.normal_(0.0, RANDOM_WEIGHT_STD, generator=generator)
    return model.to(dtype=dtype).eval().requires_grad_(False)


def synthetic_position_maps(views: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """fp16 [1, N, 3, H, W]: smooth positions inside a disc, background exactly 1."""
    grid = torch.linspace(-1, 1, size)
    y, x = torch.meshgrid(grid, grid, indexing="ij")
    inside = (x**2 + y**2) < 0.8
    maps = torch.ones(1, views, 3, size, size)
    for view in range(views):
        offset = torch.rand(3, generator=generator) * 0.2
        values = torch.stack([(x + 1) / 2, (y + 1) / 2, (x * y + 1) / 2]) * 0.8 + offset[:, None, None]
        maps[0, view] = torch.where(inside, values.clamp(0, 0.99), maps[0, view])
    return maps.half()


def unet_inputs(unet: UNet2p5DConditionModel, views: int, view_size: int, device, dtype) -> dict:
    generator = torch.Generator().manual_seed(SEED)
    latent = view_size // 8

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=generator).to(device=device, dtype=dtype)

    return dict(latents=randn(1, 2, views, 4, latent, latent), normal=randn(1, views, 4, latent, latent),
                position=randn(1, views, 4, latent, latent), reference=randn(1, 1, 4, latent, latent),
                dino=randn(1, 257, 1536), position_maps=synthetic_position_maps(views, view_size, generator).to(device))


def run_variant(unet, inputs: dict, variant: str, steps: int, device: torch.device) -> dict:
    """Time step 0 and ``steps`` later steps of one UNet layout; return timings and the guided output."""
    branches = VARIANTS[variant]
    batch = len(branches)
    dtype = unet.dtype
    dino = inputs["dino"]
    reference = inputs["reference"].expand(batch, -1, -1, -1, -1) if variant == "upstream layout" else inputs["reference"]
    kwargs = dict(
        embeds_normal=inputs["normal"].expand(batch, -1, -1, -1, -1),
        embeds_position=inputs["position"].expand(batch, -1, -1, -1, -1),
        ref_latents=reference,
        dino_hidden_states=torch.cat([dino if b == "full" else torch.zeros_like(dino) for b in branches]),
        position_maps=inputs["position_maps"].expand(batch, -1, -1, -1, -1).clone(),
        ref_scale=torch.tensor([0.0 if b == "uncond" else 1.0 for b in branches], device=device, dtype=dtype),
        cache={},
    )
    text = unet.learned_text_embeddings().expand(batch, -1, -1, -1)
    sample = inputs["latents"].expand(batch, -1, -1, -1, -1, -1)

    def call(timestep: int) -> torch.Tensor:
        with torch.no_grad():
            return unet(sample, timestep, text, **kwargs).sample

    reset_peak_memory(device)
    step0_s, prediction = timed(device, lambda: call(STEP0_TIMESTEP))
    later = [timed(device, lambda: call(LATER_TIMESTEP))[0] for _ in range(steps)]
    parts = dict(zip(branches, prediction.float().chunk(batch)))
    if "ref" in parts:
        guided = parts["uncond"] + GUIDANCE_SCALE * (parts["ref"] - parts["uncond"])
        guided = guided + GUIDANCE_SCALE * (parts["full"] - parts["ref"])
    else:
        guided = parts["uncond"] + GUIDANCE_SCALE * (parts["full"] - parts["uncond"])
    return dict(batch=batch, step0_s=step0_s, step_s=statistics.mean(later), steps_timed=steps,
                peak_memory_bytes=peak_memory_bytes(device), guided=guided.cpu())


def bench_unet(args, device: torch.device, dtype: torch.dtype) -> dict:
    unet = load_unet(args.full_size, device, dtype)
    inputs = unet_inputs(unet, args.views, args.view_size, device, dtype)
    run_variant(unet, inputs, "ours (parity)", 1, device)  # warm-up (kernels, allocator)
    results: dict[str, dict] = {}
    for _ in range(args.repeats):  # interleaved rounds; the fastest round of each layout is kept
        for variant in VARIANTS:
            result = run_variant(unet, inputs, variant, args.steps, device)
            best = results.get(variant)
            if best is None:
                results[variant] = result
            else:
                best["step0_s"] = min(best["step0_s"], result["step0_s"])
                best["step_s"] = min(best["step_s"], result["step_s"])
                best["peak_memory_bytes"] = max(best["peak_memory_bytes"], result["peak_memory_bytes"])
    reference = results["upstream layout"]
    for variant, result in results.items():
        result["step_ratio_to_upstream"] = reference["step_s"] / result["step_s"]
        result["step0_ratio_to_upstream"] = reference["step0_s"] / result["step0_s"]
        result["max_abs_diff_to_upstream"] = float((result.pop("guided") - reference["guided"]).abs().max()) \
            if variant != "upstream layout" else 0.0
    results["upstream layout"].pop("guided", None)
    return results


def run_stages_once(pipe, mesh, image, device: torch.device) -> dict[str, float]:
    """Wall time of each stage of one ``Hunyuan3DPaintPipeline`` run."""
    from hy3dpaint.export import export_glb

    stage: dict[str, float] = {}
    stage["remesh + UV unwrap"], uv_mesh = timed(device, lambda: pipe.prepare_mesh(mesh))
    seconds, renderer = timed(device, lambda: pipe.make_renderer(uv_mesh))
    seconds2, conditions = timed(device, lambda: pipe.render_conditions(renderer))
    stage["view selection + condition renders"] = seconds + seconds2
    stage["style + DINO + multiview diffusion"], views = timed(
        device, lambda: pipe.generate_views(image, conditions, SEED))
    stage["super-resolution"], upscaled = timed(device, lambda: pipe.upscale_views(views))
    stage["bake + inpaint"], textures = timed(
        device, lambda: pipe.bake_textures(uv_mesh, renderer, conditions.views, upscaled))
    stage["textured mesh"], textured = timed(device, lambda: pipe.textured_mesh(uv_mesh, *textures))
    stage["GLB export"] = timed(device, lambda: export_glb(textured))[0]
    return stage


def bench_pipeline_stages(device: torch.device) -> dict[str, float]:
    """Wall time of each stage of the tiny pipeline (one warm-up run, then one timed run)."""
    import trimesh
    from PIL import Image

    from hy3dpaint import Hunyuan3DPaintConfig, Hunyuan3DPaintPipeline
    from tests.paint.tiny_weights import build_tiny_paint_weights

    image = Image.fromarray(np.load(PAINT_DATA / "diffusion" / "sampling.npz")["reference_rgba_uint8"])
    mesh = trimesh.load(PAINT_DATA / "mesh" / "mesh.glb", force="mesh")
    with tempfile.TemporaryDirectory(prefix="paint_weights_") as folder:
        weights = build_tiny_paint_weights(Path(folder))
        load_s, pipe = timed(device, lambda: Hunyuan3DPaintPipeline(
            Hunyuan3DPaintConfig.from_weights_dir(weights, device=str(device), **TINY_PIPELINE_SIZES)))
    timings: dict[str, float] = {"load weights": load_s}
    run_stages_once(pipe, mesh, image, device)  # warm-up
    timings.update(run_stages_once(pipe, mesh, image, device))
    timings["total (without load)"] = sum(v for k, v in timings.items() if k != "load weights")
    return timings


def markdown(report: dict) -> str:
    lines = [f"# Paint model benchmark ({report['mode']}, {report['device']}, {report['dtype']})", "",
             f"{report['views']} views at {report['view_size']} px; torch {report['versions']['torch']}, "
             f"{report['torch_threads']} thread(s); {report['machine']}.", "",
             "## UNet 2.5D per denoising step", "",
             "| layout | batch | step 0 (s) | later step (s) | speed-up vs upstream | max abs diff of guided "
             "prediction | peak memory (MiB) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for variant, result in report["unet"].items():
        lines.append(f"| {variant} | {result['batch']} | {result['step0_s']:.3f} | {result['step_s']:.3f} | "
                     f"{result['step_ratio_to_upstream']:.2f}x | {result['max_abs_diff_to_upstream']:.2e} | "
                     f"{result['peak_memory_bytes'] / 2**20:.0f} |")
    if report.get("stages"):
        lines += ["", "## Pipeline stages (tiny weights)", "", "| stage | seconds |", "| --- | --- |"]
        lines += [f"| {name} | {seconds:.2f} |" for name, seconds in report["stages"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--full-size", action="store_true", help="SD-2.1-sized UNet 2.5D with random weights")
    parser.add_argument("--views", type=int, help="number of views (default 6)")
    parser.add_argument("--view-size", type=int, help="view size in pixels (tiny 64, full size 512)")
    parser.add_argument("--steps", type=int, help="timed steps after step 0 (tiny 10, full size 3)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds, best kept (default 3)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--skip-stages", action="store_true", help="skip the tiny pipeline stage timings")
    args = parser.parse_args(argv)
    defaults = FULL_SIZE_DEFAULTS if args.full_size else TINY_DEFAULTS
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    if args.full_size and device.type != "cuda":
        print("warning: --full-size on a CPU runs a 2B-parameter UNet in fp32; expect minutes per step",
              file=sys.stderr)
    mode = "full-size" if args.full_size else "tiny"
    report = dict(mode=mode, device=str(device), dtype=str(dtype).removeprefix("torch."), views=args.views,
                  view_size=args.view_size, torch_threads=torch.get_num_threads(),
                  machine=f"{platform.machine()}, {torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor() or 'cpu'}",
                  versions={name: version(name) for name in ("torch", "diffusers", "numpy")})
    report["unet"] = bench_unet(args, device, dtype)
    if not args.full_size and not args.skip_stages:
        report["stages"] = bench_pipeline_stages(device)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stem = f"paint_model_{mode}_{device.type}"
    (RESULTS_DIR / f"{stem}.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    table = markdown(report)
    (RESULTS_DIR / f"{stem}.md").write_text(table, encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
