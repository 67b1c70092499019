"""Whole-pipeline GPU benchmark: full-size Hunyuan3D-2.1 (random weights), per-phase seconds and peak memory.

What it does, in one process on one device, with no download and no tritonserver:

1. builds the **full-size** architectures (shape DiT + MoE, ShapeVAE, DINOv2-L conditioner; UNet 2.5D,
   VAE, DINOv2-giant, RealESRGAN x4) with random weights and writes them in the **official on-disk
   layout** (``hunyuan3d-dit-v2-1/{config.yaml, model.fp16.ckpt}``, ``hunyuan3d-paintpbr-v2-1/...``,
   ``dinov2-giant/...``, ``RealESRGAN_x4plus.pth``; the dtypes of the official files);
2. loads them through our real loaders (``Hunyuan3DDiTFlowMatchingPipeline.from_pretrained`` and
   ``Hunyuan3DPaintPipeline``), in float16 on CUDA (``--dtype`` changes it);
3. runs the whole pipeline at the defaults (shape: ``OCTREE_RESOLUTION`` 256, 5 steps, guidance 5,
   ``FACE_COUNT`` 40000; paint: 6 views at 512, renders 2048, textures 4096, 15 steps), timing each phase
   and reading ``torch.cuda.max_memory_allocated`` (reset at the start of the phase, so it includes the
   resident weights): DINO, the denoising steps, volume decoding, marching cubes, post-processing, UV,
   renders, DINO (paint), multiview diffusion, super-resolution, bake, inpaint, export. The shape stage
   stays loaded while the texture stage runs; the summary's peak adds the texture weights to the shape
   phases' peaks (they ran before it was loaded), i.e. the peak of one GPU holding both stages.

Random DiT weights give no real shape, so marching cubes runs on the random model's grid (as the
pipeline would; its face count is reported) while post-processing and the whole texture stage run on a
realistic mesh: the built-in silhouette engine's mug (``examples/mug.png``) at the same octree resolution.

``--tiny --device cpu`` runs the same code with the tiny architectures of the test checkpoints
(``tests/data/shape/model``, ``tests/data/paint/model``, ``tests/data/paint/sr``; random weights with
their keys and shapes) at the tiny paint sizes (64 / 128 / 128) and ``OCTREE_RESOLUTION`` 64, in
minutes; ``tests/test_bench_gpu.py`` runs it so that it cannot rot.

Output: ``--out FILE.json`` writes ``{"device", "dtype", "stages": {name: {"seconds", "peak_gib"}}, ...}``
(``peak_gib`` is null on the CPU) and ``FILE.md`` beside it; default ``benchmarks/results/gpu.json``
(``gpu_tiny_cpu.json`` with ``--tiny``). On a bare CUDA machine (current torch and numpy 2) carry the
wheels listed in docs/gpu.md "Benchmark on a bare CUDA machine"; a missing one is named at start.

Usage::

    python benchmarks/bench_gpu.py [--device cuda|cpu] [--dtype float16|bfloat16|float32] [--tiny]
        [--out FILE.json] [--weights-dir DIR] [--octree-resolution N] [--volume-decoder NAME]
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Before torch is imported: the allocator setting the image uses (docs/gpu.md "Memory plan").
os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "client"))

RESULTS_DIR = ROOT / "benchmarks" / "results"
MUG_IMAGE = ROOT / "examples" / "mug.png"
TINY_SHAPE_FOLDER = ROOT / "tests" / "data" / "shape" / "model" / "hunyuan3d-dit-v2-1"
TINY_PAINT_FOLDER = ROOT / "tests" / "data" / "paint" / "model" / "hunyuan3d-paintpbr-tiny"
TINY_RRDBNET = ROOT / "tests" / "data" / "paint" / "sr" / "rrdbnet_tiny.pth"

#: Third-party modules the benchmark needs besides torch and numpy (named when missing).
REQUIRED_MODULES = ("diffusers", "transformers", "trimesh", "safetensors", "yaml", "PIL", "cv2", "scipy",
                    "skimage", "fast_simplification")
#: Request defaults (the contract's) and the paint stage's defaults (upstream's).
SEED = 1234
OCTREE_RESOLUTION = 256
TINY_OCTREE_RESOLUTION = 64
NUM_INFERENCE_STEPS = 5
GUIDANCE_SCALE = 5.0
FACE_COUNT = 40000
TINY_PAINT_SIZES = {"resolution": 64, "render_size": 128, "texture_size": 128, "max_num_view": 6}
#: Standard deviation of the random weights (finite activations in float16 through every network).
INIT_STD = 0.02
GIB = 2**30

#: Official sub-folders and files.
SHAPE_SUBFOLDER = "hunyuan3d-dit-v2-1"
PAINT_SUBFOLDER = "hunyuan3d-paintpbr-v2-1"
DINO_SUBFOLDER = "dinov2-giant"
REALESRGAN_FILE = "RealESRGAN_x4plus.pth"

#: facebook/dinov2-giant's config.json (the values that define the architecture).
DINOV2_GIANT_CONFIG: dict[str, Any] = {
    "architectures": ["Dinov2Model"], "model_type": "dinov2", "hidden_size": 1536, "num_hidden_layers": 40,
    "num_attention_heads": 24, "mlp_ratio": 4, "use_swiglu_ffn": True, "image_size": 518, "patch_size": 14,
    "num_channels": 3, "layer_norm_eps": 1e-6, "layerscale_value": 1.0, "qkv_bias": True, "hidden_act": "gelu",
    "initializer_range": 0.02, "drop_path_rate": 0.0, "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0, "torch_dtype": "float32",
}
#: The tiny DINOv2 of the test weights (giant's width, one layer, narrow MLP).
DINOV2_TINY_CONFIG: dict[str, Any] = {
    **DINOV2_GIANT_CONFIG, "num_hidden_layers": 1, "mlp_ratio": 1.0, "torch_dtype": "float16",
}
#: The SD-2.1 UNet config Hunyuan3D-Paint 2.1 builds on (tests/data/keys/paint/unet_config_used.json).
UNET_FULL_CONFIG: dict[str, Any] = {
    "_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": [5, 10, 20, 20],
    "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": False, "cross_attention_dim": 1024,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1, "dual_cross_attention": False, "flip_sin_to_cos": True, "freq_shift": 0,
    "in_channels": 4, "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-05,
    "norm_num_groups": 32, "num_class_embeds": None, "only_cross_attention": False, "out_channels": 4,
    "sample_size": 96, "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "upcast_attention": True, "use_linear_projection": True,
}
#: The SD-2.x AutoencoderKL config.
VAE_FULL_CONFIG: dict[str, Any] = {
    "_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32,
    "sample_size": 768, "scaling_factor": 0.18215, "force_upcast": True,
}

logger = logging.getLogger("bench_gpu")


# ---------------------------------------------------------------------------------------------------
# Random weights in the official layout
# ---------------------------------------------------------------------------------------------------


@dataclass
class WeightFile:
    """One weights file: its format, the dtype it is stored in, and ``{entry: {key: shape}}``.

    ``entry`` ``None`` means a flat state dict; otherwise the file holds ``{entry: state_dict}``.
    """

    path: str
    dtype: str
    entries: dict[str | None, dict[str, tuple[int, ...]]]

    @property
    def num_elements(self) -> int:
        import math

        return sum(math.prod(shape) for shapes in self.entries.values() for shape in shapes.values())


@dataclass
class Layout:
    """A weights folder: text files (configs) and weights files, by path relative to the folder."""

    texts: dict[str, str] = field(default_factory=dict)
    weights: list[WeightFile] = field(default_factory=list)


def _shape_files(config: Mapping[str, Any], layout: Layout) -> None:
    import torch
    import yaml

    from hy3dshape.loading import build_component, part_checkpoint_shapes

    parts = {}
    for part in ("model", "vae", "conditioner"):
        with torch.device("meta"):
            module = build_component(config, part)
        parts[part] = part_checkpoint_shapes(part, module)
    layout.texts[f"{SHAPE_SUBFOLDER}/config.yaml"] = yaml.safe_dump(dict(config), sort_keys=False)
    layout.weights.append(WeightFile(f"{SHAPE_SUBFOLDER}/model.fp16.ckpt", "float16", parts))


def _module_shapes(build: Callable[[], Any]) -> dict[str, tuple[int, ...]]:
    import torch

    from hy3dcore.loading import checkpoint_shapes

    with torch.device("meta"):
        return checkpoint_shapes(build())


def _paint_files(unet_config: dict, vae_config: dict, scheduler_config: dict, model_index: dict,
                 dino_config: dict, rrdbnet: dict[str, tuple[int, ...]], layout: Layout) -> None:
    from diffusers import AutoencoderKL

    from hy3dcore.image_encoders import dinov2_checkpoint_shapes
    from hy3dpaint import UNet2p5DConditionModel

    for name, content in (("model_index.json", model_index), ("unet/config.json", unet_config),
                          ("vae/config.json", vae_config), ("scheduler/scheduler_config.json", scheduler_config)):
        layout.texts[f"{PAINT_SUBFOLDER}/{name}"] = json.dumps(content, indent=2)
    layout.texts[f"{DINO_SUBFOLDER}/config.json"] = json.dumps(dino_config, indent=2)
    unet = _module_shapes(lambda: UNet2p5DConditionModel.from_config(unet_config))
    vae = _module_shapes(lambda: AutoencoderKL.from_config(vae_config))
    layout.weights += [
        WeightFile(f"{PAINT_SUBFOLDER}/unet/diffusion_pytorch_model.bin", "float16", {None: unet}),
        WeightFile(f"{PAINT_SUBFOLDER}/vae/diffusion_pytorch_model.bin", "float32", {None: vae}),
        WeightFile(f"{DINO_SUBFOLDER}/model.safetensors", dino_config.get("torch_dtype", "float32"),
                   {None: dinov2_checkpoint_shapes(dino_config)}),
        WeightFile(REALESRGAN_FILE, "float32", {"params_ema": rrdbnet}),
    ]


def full_size_layout() -> Layout:
    """The official weights folder of Hunyuan3D-2.1 at full size (configs and key/shape inventories)."""
    from hy3dpaint.models.rrdbnet import RRDBNet
    from hy3dshape.official_config import OFFICIAL_CONFIG

    layout = Layout()
    _shape_files(OFFICIAL_CONFIG, layout)
    tiny = TINY_PAINT_FOLDER  # the official model_index.json and scheduler config (same values)
    _paint_files(UNET_FULL_CONFIG, VAE_FULL_CONFIG, _read_json(tiny / "scheduler" / "scheduler_config.json"),
                 _read_json(tiny / "model_index.json"), DINOV2_GIANT_CONFIG, _module_shapes(RRDBNet), layout)
    return layout


def tiny_layout() -> Layout:
    """The same folder with the tiny architectures of the test checkpoints."""
    import torch
    import yaml

    layout = Layout()
    _shape_files(yaml.safe_load((TINY_SHAPE_FOLDER / "config.yaml").read_text()), layout)
    rrdbnet = torch.load(TINY_RRDBNET, map_location="cpu", weights_only=True)["params_ema"]
    _paint_files(_read_json(TINY_PAINT_FOLDER / "unet" / "config.json"),
                 _read_json(TINY_PAINT_FOLDER / "vae" / "config.json"),
                 _read_json(TINY_PAINT_FOLDER / "scheduler" / "scheduler_config.json"),
                 _read_json(TINY_PAINT_FOLDER / "model_index.json"), DINOV2_TINY_CONFIG,
                 {key: tuple(value.shape) for key, value in rrdbnet.items()}, layout)
    return layout


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def write_random_weights(layout: Layout, root: Path, device: str, seed: int = 0) -> int:
    """Write ``layout`` under ``root`` with N(0, INIT_STD) weights drawn on ``device``; returns bytes written."""
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator(device).manual_seed(seed)
    for name, text in layout.texts.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    written = 0
    for weight_file in layout.weights:
        dtype = getattr(torch, weight_file.dtype)
        content: dict[str, Any] = {}
        for entry, shapes in weight_file.entries.items():
            state = {key: (torch.randn(shape, generator=generator, device=device) * INIT_STD).to("cpu", dtype)
                     for key, shape in shapes.items()}
            if entry is None:
                content = state
            else:
                content[entry] = state
        path = root / weight_file.path
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".safetensors":
            save_file(content, str(path))
        else:
            torch.save(content, path)
        written += path.stat().st_size
        del content
        logger.info("wrote %s (%.2f GB, %s)", weight_file.path, path.stat().st_size / 1e9, weight_file.dtype)
    return written


# ---------------------------------------------------------------------------------------------------
# Phase clock
# ---------------------------------------------------------------------------------------------------


class PhaseClock:
    """Seconds and peak allocated memory of consecutive phases (CUDA synchronised at every boundary)."""

    def __init__(self, device: str):
        import torch

        self.cuda = torch.device(device).type == "cuda"
        self.stages: dict[str, dict[str, Any]] = {}
        self._current: str | None = None
        self._start = 0.0

    def _sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def start(self, name: str) -> None:
        """End the running phase (if any) and start ``name``."""
        self.stop()
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
        self._current, self._start = name, time.perf_counter()

    def stop(self) -> None:
        """End the running phase, adding its seconds (and raising its peak) when it ran before."""
        if self._current is None:
            return
        self._sync()
        seconds = time.perf_counter() - self._start
        peak = None
        if self.cuda:
            import torch

            peak = round(torch.cuda.max_memory_allocated() / GIB, 3)
        entry = self.stages.setdefault(self._current, {"seconds": 0.0, "peak_gib": peak})
        entry["seconds"] = round(entry["seconds"] + seconds, 4)
        if peak is not None:
            entry["peak_gib"] = max(entry["peak_gib"] or 0.0, peak)
        logger.info("%-22s %8.3f s  peak %s GiB", self._current, seconds, peak)
        self._current = None

    def allocated_gib(self) -> float | None:
        """GiB of tensors allocated now (None on the CPU)."""
        if not self.cuda:
            return None
        import torch

        self._sync()
        return torch.cuda.memory_allocated() / GIB

    def note(self, name: str, **values: Any) -> None:
        """Attach extra values (counts) to a phase's entry."""
        self.stages.setdefault(name, {"seconds": 0.0, "peak_gib": None}).update(values)


# ---------------------------------------------------------------------------------------------------
# The pipeline, phase by phase
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    device: str
    dtype: str
    tiny: bool
    octree_resolution: int
    volume_decoder: str | None


def run_shape(root: Path, settings: Settings, clock: PhaseClock, image: Any) -> Any:
    """Load the shape stage and run it phase by phase; returns the pipeline (kept resident)."""
    import torch

    from hy3dshape import Hunyuan3DDiTFlowMatchingPipeline

    dtype = getattr(torch, settings.dtype)
    clock.start("shape:load")
    pipe = Hunyuan3DDiTFlowMatchingPipeline.from_pretrained(str(root), subfolder=SHAPE_SUBFOLDER,
                                                            device=settings.device, dtype=dtype)
    if settings.volume_decoder:
        pipe.set_volume_decoder(settings.volume_decoder)
    call_defaults = {name: p.default for name, p in inspect.signature(pipe.__call__).parameters.items()}
    box_v, mc_level, num_chunks = call_defaults["box_v"], call_defaults["mc_level"], call_defaults["num_chunks"]
    resolution = settings.octree_resolution
    with torch.inference_mode():
        clock.start("shape:dino")
        processed = pipe.image_processor([image])["image"]
        context = pipe.encode_condition(processed, do_classifier_free_guidance=GUIDANCE_SCALE >= 0)
        latents = pipe.prepare_latents(1, torch.Generator().manual_seed(SEED))
        clock.start("shape:denoise")
        latents = pipe.denoise(latents, context, NUM_INFERENCE_STEPS, GUIDANCE_SCALE)
        clock.note("shape:denoise", steps=NUM_INFERENCE_STEPS)
        clock.start("shape:volume_decode")
        grid = pipe.decode_volume(latents, box_v, resolution, num_chunks, mc_level)
        clock.start("shape:marching_cubes")
        meshes = pipe.vae.surface_extractor(grid, mc_level, box_v, resolution)
        clock.stop()
    faces = 0 if not meshes or meshes[0] is None else len(meshes[0][1])
    clock.note("shape:marching_cubes", faces_of_random_model=faces, octree_resolution=resolution)
    del processed, context, latents, grid, meshes
    return pipe


def realistic_mesh(image: Any, resolution: int, clock: PhaseClock) -> Any:
    """The silhouette engine's mug at ``resolution``, post-processed to ``FACE_COUNT`` (timed)."""
    from hy3dshape import SilhouetteLiftingPipeline, postprocess_mesh

    raw = SilhouetteLiftingPipeline()(image=image, octree_resolution=resolution, output_type="trimesh")[0]
    clock.start("shape:postprocess")
    mesh = postprocess_mesh(raw, FACE_COUNT)
    clock.stop()
    clock.note("shape:postprocess", faces_in=len(raw.faces), faces_out=len(mesh.faces))
    return mesh


def run_paint(root: Path, settings: Settings, clock: PhaseClock, mesh: Any, image: Any) -> bytes:
    """Load the texture stage and run it phase by phase on ``mesh``; returns the GLB."""
    import torch

    from hy3dpaint import Hunyuan3DPaintConfig, Hunyuan3DPaintPipeline, export_glb
    from hy3dpaint.multiview import prepare_style_image
    from hy3dpaint.pipeline import GeneratedViews

    sizes = TINY_PAINT_SIZES if settings.tiny else {}
    allocated_before = clock.allocated_gib()
    clock.start("paint:load")
    config = Hunyuan3DPaintConfig.from_weights_dir(root, device=settings.device,
                                                   dtype=getattr(torch, settings.dtype), **sizes)
    pipe = Hunyuan3DPaintPipeline(config)
    clock.stop()
    if allocated_before is not None:
        clock.note("paint:load", weights_gib=round(clock.allocated_gib() - allocated_before, 3))
    with torch.inference_mode():
        clock.start("paint:uv")
        uv_mesh = pipe.prepare_mesh(mesh)
        clock.start("paint:render")
        renderer = pipe.make_renderer(uv_mesh)
        conditions = pipe.render_conditions(renderer)
        clock.start("paint:dino")
        style = prepare_style_image(image, config.resolution)
        dino_states = pipe.dino(style)
        clock.start("paint:diffusion")
        output = pipe.multiview(style, conditions.normal_maps, conditions.position_maps, dino_states, seed=SEED,
                                num_inference_steps=config.num_inference_steps,
                                guidance_scale=config.guidance_scale, fast_guidance=config.fast_guidance)
        generated = GeneratedViews(albedo=list(output.albedo), mr=list(output.mr))
        del output, dino_states
        clock.start("paint:upscale")
        upscaled = pipe.upscale_views(generated)
        del generated
        clock.start("paint:bake")

        def after_bake(phase: str, done: int, total: int) -> None:
            if done == 1:
                clock.start("paint:inpaint")

        bake_kwargs = {"callback": after_bake} if "callback" in inspect.signature(pipe.bake_textures).parameters else {}
        albedo, mr = pipe.bake_textures(uv_mesh, renderer, conditions.views, upscaled, **bake_kwargs)
        del upscaled
        clock.start("export")
        glb = export_glb(pipe.textured_mesh(uv_mesh, albedo, mr))
        clock.stop()
    clock.note("paint:uv", faces=len(uv_mesh.faces))
    clock.note("paint:render", views=len(conditions.views), render_size=config.render_size)
    clock.note("paint:diffusion", views=len(conditions.views), view_size=config.resolution,
               steps=config.num_inference_steps)
    clock.note("paint:bake", texture_size=config.texture_size)
    clock.note("export", glb_bytes=len(glb))
    return glb


# ---------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------

SHAPE_PHASES = ("shape:dino", "shape:denoise", "shape:volume_decode", "shape:marching_cubes", "shape:postprocess")
PAINT_PHASES = ("paint:uv", "paint:render", "paint:dino", "paint:diffusion", "paint:upscale", "paint:bake",
                "paint:inpaint", "export")


def summary(stages: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Totals: shape and texture seconds (without loading) and the peak with both stages resident.

    The shape phases run before the texture stage is loaded, so their peaks are raised by the texture
    stage's weights (``paint:load``'s ``weights_gib``): what they would be when both stages stay loaded.
    """
    paint_weights = stages.get("paint:load", {}).get("weights_gib")
    peaks = []
    for name, entry in stages.items():
        if entry.get("peak_gib") is None:
            continue
        extra = paint_weights if name.startswith("shape:") and paint_weights is not None else 0.0
        peaks.append(entry["peak_gib"] + extra)
    return {
        "shape_seconds": round(sum(stages[name]["seconds"] for name in SHAPE_PHASES if name in stages), 3),
        "texture_seconds": round(sum(stages[name]["seconds"] for name in PAINT_PHASES if name in stages), 3),
        "peak_gib": round(max(peaks), 3) if peaks else None,
    }


def markdown(report: Mapping[str, Any]) -> str:
    lines = [f"# bench_gpu: {report['device_name']} ({report['device']}, {report['dtype']}"
             f"{', tiny architectures' if report['tiny'] else ', full size, random weights'})", "",
             "| phase | seconds | peak GiB (allocated) | notes |", "| --- | --- | --- | --- |"]
    for name, entry in report["stages"].items():
        notes = ", ".join(f"{key} {value}" for key, value in entry.items() if key not in ("seconds", "peak_gib"))
        peak = "n/a" if entry["peak_gib"] is None else f"{entry['peak_gib']:.2f}"
        lines.append(f"| {name} | {entry['seconds']:.3f} | {peak} | {notes} |")
    totals = report["summary"]
    peak = "n/a" if totals["peak_gib"] is None else f"{totals['peak_gib']:.2f} GiB"
    lines += ["", f"Shape {totals['shape_seconds']:.2f} s, texture {totals['texture_seconds']:.2f} s (loading "
              f"excluded), peak allocated with both stages resident {peak}. Weights written: {report['weights_gb']:.2f} GB; "
              f"parameters: {report['parameters']}.", ""]
    return "\n".join(lines)


def check_modules() -> None:
    """Exit naming every module the benchmark needs that is not installed."""
    import importlib.util

    missing = [name for name in REQUIRED_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        sys.exit(f"bench_gpu: missing Python modules {', '.join(missing)}; see docs/gpu.md "
                 f"'Benchmark on a bare CUDA machine' for the wheels to carry")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda when available)")
    parser.add_argument("--dtype", default=None, choices=("float16", "bfloat16", "float32"),
                        help="default: float16 on CUDA, float32 on the CPU")
    parser.add_argument("--tiny", action="store_true", help="tiny architectures and sizes (minutes on a CPU)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (a .md is written beside it)")
    parser.add_argument("--weights-dir", type=Path, default=None,
                        help="write the random weights here and keep them (default: a temporary folder)")
    parser.add_argument("--octree-resolution", type=int, default=None)
    parser.add_argument("--volume-decoder", default=None,
                        help="dense, hierarchical, flashvdm (default: the serving default HY3D_VOLUME_DECODER)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    check_modules()

    import numpy as np
    import torch
    from PIL import Image

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = args.dtype or ("float16" if device.startswith("cuda") else "float32")
    resolution = args.octree_resolution or (TINY_OCTREE_RESOLUTION if args.tiny else OCTREE_RESOLUTION)
    settings = Settings(device, dtype, args.tiny, resolution, args.volume_decoder or _serving_volume_decoder())
    out = args.out or RESULTS_DIR / ("gpu_tiny_cpu.json" if args.tiny else f"gpu_{device.split(':')[0]}.json")
    image = Image.open(MUG_IMAGE).convert("RGBA")

    layout = tiny_layout() if args.tiny else full_size_layout()
    temporary = args.weights_dir is None
    root = Path(tempfile.mkdtemp(prefix="bench-gpu-weights-")) if temporary else args.weights_dir
    try:
        started = time.perf_counter()
        written = write_random_weights(layout, root, device)
        logger.info("random weights written to %s in %.1f s", root, time.perf_counter() - started)
        clock = PhaseClock(device)
        shape_pipe = run_shape(root, settings, clock, image)
        mesh = realistic_mesh(image, resolution, clock)
        glb = run_paint(root, settings, clock, mesh, image)
        del shape_pipe
    finally:
        if temporary:
            shutil.rmtree(root, ignore_errors=True)
    assert glb[:4] == b"glTF", "export did not produce a GLB"
    report = {
        "device": device,
        "dtype": dtype,
        "device_name": torch.cuda.get_device_name(device) if device.startswith("cuda") else platform.processor() or "cpu",
        "tiny": args.tiny,
        "stages": clock.stages,
        "summary": summary(clock.stages),
        "weights_gb": round(written / 1e9, 3),
        "parameters": {weight_file.path: weight_file.num_elements for weight_file in layout.weights},
        "settings": {"octree_resolution": resolution, "num_inference_steps": NUM_INFERENCE_STEPS,
                     "guidance_scale": GUIDANCE_SCALE, "face_count": FACE_COUNT, "seed": SEED,
                     "volume_decoder": settings.volume_decoder,
                     "paint_sizes": TINY_PAINT_SIZES if args.tiny else "defaults (6 views, 512, 2048, 4096)",
                     "PYTORCH_CUDA_ALLOC_CONF": os.environ.get("PYTORCH_CUDA_ALLOC_CONF")},
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
                     "cuda": torch.version.cuda},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return 0


def _serving_volume_decoder() -> str | None:
    """The serving default of HY3D_VOLUME_DECODER when the shape library knows it, else the pipeline's."""
    from hy3d_serving.settings import VOLUME_DECODER
    from hy3dshape.volume_decoders import VOLUME_DECODERS

    return VOLUME_DECODER.default if VOLUME_DECODER.default in VOLUME_DECODERS else None


if __name__ == "__main__":
    sys.exit(main())
