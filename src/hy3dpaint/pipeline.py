"""``Hunyuan3DPaintPipeline``: the whole neural texture stage (FACTS §1).

mesh + image -> remesh (<= 40k faces) -> UV unwrap -> view selection -> normal/position renders ->
style image + DINO -> multiview PBR diffusion -> Real-ESRGAN x4 -> bake albedo and MR -> inpaint ->
textured ``trimesh.Trimesh`` (PBR material) or GLB bytes.

Each stage is a public method so callers (and the benchmark) can run or time them one by one;
``__call__`` chains them. Weights are loaded once, in the constructor, from local folders only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import trimesh
from PIL import Image

from hy3dcore.layout import DINO_SUBFOLDER, REALESRGAN_FILE
from hy3dcore.layout import PAINT_SUBFOLDER as MULTIVIEW_SUBFOLDER
from hy3dpaint.dino import DinoImageEncoder
from hy3dpaint.multiview import (
    DEFAULT_GUIDANCE_SCALE,
    DEFAULT_NUM_INFERENCE_STEPS,
    LATENT_SIZE_MULTIPLE,
    VAE_DOWNSAMPLING,
    MultiviewPBRDiffusionPipeline,
    prepare_style_image,
)
from hy3dpaint.progress import (
    PHASE_DIFFUSION,
    PHASE_RENDER,
    PHASE_UPSCALE,
    PHASE_UV,
    ProgressCallback,
    report,
)
from hy3dpaint.super_resolution import RealESRGANUpscaler

logger = logging.getLogger(__name__)

#: Upstream's remesh target: larger meshes are decimated to this many faces.
REMESH_MAX_FACES = 40_000
#: Upstream defaults (demo.py).
DEFAULT_MAX_NUM_VIEW = 6
DEFAULT_RESOLUTION = 512
DEFAULT_RENDER_SIZE = 2048
DEFAULT_TEXTURE_SIZE = 4096
#: Allowed ranges of the size settings.
MIN_MAX_NUM_VIEW, MAX_MAX_NUM_VIEW = 1, 12
VIEW_SIZE_MULTIPLE = VAE_DOWNSAMPLING * LATENT_SIZE_MULTIPLE
MIN_RENDER_SIZE, MAX_RENDER_SIZE = 64, 8192
MIN_TEXTURE_SIZE, MAX_TEXTURE_SIZE = 64, 8192
#: Meshes larger than this are rejected (upstream's guard).
MAX_INPUT_FACES = 500_000_000
OutputType = Literal["trimesh", "glb"]


@dataclass(frozen=True)
class Hunyuan3DPaintConfig:
    """Settings of the texture stage; defaults are upstream's (demo.py).

    * ``multiview_model_path``: the diffusers-layout ``hunyuan3d-paintpbr-v2-1`` folder;
    * ``dino_model_path``: a Hugging Face DINOv2-giant folder (``config.json`` + ``model.safetensors``);
    * ``realesrgan_ckpt_path``: ``RealESRGAN_x4plus.pth`` (weights under ``params_ema``);
    * ``max_num_view`` (views painted; the first 6 always are), ``resolution`` (diffusion view
      size, a multiple of 8), ``render_size`` (condition renders and bake images),
      ``texture_size`` (UV atlas);
    * ``num_inference_steps``, ``guidance_scale``: UniPC steps and CFG scale;
    * ``device``/``dtype``: default CUDA when available, fp16 on CUDA and fp32 elsewhere;
    * ``use_remesh``: decimate inputs above ``REMESH_MAX_FACES`` faces first (upstream default on);
    * ``fast_guidance``: skip the CFG branch that cancels (a third less UNet work; see docs);
    * ``mr_layout``: how the model's MR views are read: "reference" (R = metallic, G = roughness,
      as upstream's export) or "gltf" (B = metallic, G = roughness); None means
      ``$HY3D_MR_LAYOUT`` or "reference" (see ``hy3dpaint.export`` and docs/paint_model.md);
    * ``halve_output_textures``: output textures at ``texture_size / 2`` (upstream's export);
    * ``inpaint_mode``: "fast" or "reference" (see ``hy3dpaint.inpaint``);
    * ``uv_method``: "charts" (our unwrapper, default: >10x faster than xatlas at higher atlas
      utilisation) or "xatlas" (upstream's unwrap, for parity); see ``hy3dpaint.uv``.
    """

    multiview_model_path: Path
    dino_model_path: Path
    realesrgan_ckpt_path: Path
    max_num_view: int = DEFAULT_MAX_NUM_VIEW
    resolution: int = DEFAULT_RESOLUTION
    render_size: int = DEFAULT_RENDER_SIZE
    texture_size: int = DEFAULT_TEXTURE_SIZE
    num_inference_steps: int = DEFAULT_NUM_INFERENCE_STEPS
    guidance_scale: float = DEFAULT_GUIDANCE_SCALE
    device: str = field(default_factory=lambda: "cuda" if torch.cuda.is_available() else "cpu")
    dtype: torch.dtype | None = None
    use_remesh: bool = True
    fast_guidance: bool = False
    mr_layout: str | None = None
    halve_output_textures: bool = True
    inpaint_mode: str = "fast"
    uv_method: str = "charts"

    def __post_init__(self) -> None:
        for name in ("multiview_model_path", "dino_model_path", "realesrgan_ckpt_path"):
            object.__setattr__(self, name, Path(getattr(self, name)))
        object.__setattr__(self, "device", str(self.device))
        _check_range("max_num_view", self.max_num_view, MIN_MAX_NUM_VIEW, MAX_MAX_NUM_VIEW)
        if not isinstance(self.resolution, int) or self.resolution < VIEW_SIZE_MULTIPLE or \
                self.resolution % VIEW_SIZE_MULTIPLE:
            raise ValueError(f"resolution must be a positive multiple of {VIEW_SIZE_MULTIPLE}, got {self.resolution!r}")
        _check_range("render_size", self.render_size, MIN_RENDER_SIZE, MAX_RENDER_SIZE)
        _check_range("texture_size", self.texture_size, MIN_TEXTURE_SIZE, MAX_TEXTURE_SIZE)
        _check_range("num_inference_steps", self.num_inference_steps, 1, 1000)
        if not np.isfinite(self.guidance_scale) or self.guidance_scale < 0:
            raise ValueError(f"guidance_scale must be a finite number >= 0, got {self.guidance_scale!r}")
        if self.mr_layout is not None:
            from hy3dpaint.export import MR_LAYOUTS

            if self.mr_layout not in MR_LAYOUTS:
                raise ValueError(f"mr_layout must be one of {', '.join(MR_LAYOUTS)} or None, got {self.mr_layout!r}")
        from hy3dpaint.inpaint import INPAINT_MODES
        from hy3dpaint.uv import UV_METHODS

        if self.inpaint_mode not in INPAINT_MODES:
            raise ValueError(f"inpaint_mode must be one of {', '.join(INPAINT_MODES)}, got {self.inpaint_mode!r}")
        if self.uv_method not in UV_METHODS:
            raise ValueError(f"uv_method must be one of {', '.join(UV_METHODS)}, got {self.uv_method!r}")
        if self.dtype is not None and self.dtype not in (torch.float16, torch.bfloat16, torch.float32):
            raise ValueError(f"dtype must be torch.float16, torch.bfloat16, torch.float32 or None, got {self.dtype}")

    @classmethod
    def from_weights_dir(cls, weights_dir: str | Path, **overrides) -> Hunyuan3DPaintConfig:
        """Config for the official layout under ``weights_dir``: ``hunyuan3d-paintpbr-v2-1/``,
        ``dinov2-giant/`` and ``RealESRGAN_x4plus.pth``; ``overrides`` set any other field."""
        weights_dir = Path(weights_dir)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"unknown Hunyuan3DPaintConfig field(s) {unknown}; allowed: {sorted(known)}")
        paths = dict(multiview_model_path=weights_dir / MULTIVIEW_SUBFOLDER,
                     dino_model_path=weights_dir / DINO_SUBFOLDER,
                     realesrgan_ckpt_path=weights_dir / REALESRGAN_FILE)
        return cls(**{**paths, **overrides})

    @property
    def torch_dtype(self) -> torch.dtype:
        """``dtype``, or fp16 on CUDA and fp32 elsewhere."""
        if self.dtype is not None:
            return self.dtype
        return torch.float16 if torch.device(self.device).type == "cuda" else torch.float32


def _check_range(name: str, value: int, minimum: int, maximum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ValueError(f"{name} must be an integer in [{minimum}, {maximum}], got {value!r}")


@dataclass
class ConditionRenders:
    """Selected views and their condition maps (PIL RGB at the view size), in selection order."""

    views: list
    normal_maps: list[Image.Image]
    position_maps: list[Image.Image]


@dataclass
class GeneratedViews:
    """Albedo and MR views (PIL RGB), in selection order."""

    albedo: list[Image.Image]
    mr: list[Image.Image]


class Hunyuan3DPaintPipeline:
    """The neural texture stage: ``pipe(mesh, image, seed=..., output_type="trimesh" | "glb")``."""

    def __init__(self, config: Hunyuan3DPaintConfig):
        self.config = config
        if config.uv_method == "xatlas":
            try:
                import xatlas  # noqa: F401
            except ImportError as error:
                raise ImportError("uv_method='xatlas' needs the xatlas package (pip install xatlas==0.0.9); "
                                  "or set uv_method='charts'") from error
        device, dtype = torch.device(config.device), config.torch_dtype
        start = time.perf_counter()
        self.multiview = MultiviewPBRDiffusionPipeline.from_pretrained(config.multiview_model_path,
                                                                        device=device, dtype=dtype)
        self.dino = DinoImageEncoder.from_pretrained(config.dino_model_path, device=device, dtype=dtype)
        self.upscaler = RealESRGANUpscaler.from_checkpoint(config.realesrgan_ckpt_path, device=device, dtype=dtype)
        if device.type == "cuda":
            # Memory plan (docs/gpu.md): the VAE encodes and decodes the 2N views one at a time, not as
            # one batch (about 3 GB less at 6 views of 512 px, a few percent slower; same images).
            self.multiview.vae.enable_slicing()
        logger.info("texture stage loaded in %.1f s (%s, %s)", time.perf_counter() - start, device, dtype)

    # ------------------------------------------------------------------------------------------
    # Stages
    # ------------------------------------------------------------------------------------------

    def prepare_mesh(self, mesh: trimesh.Trimesh | trimesh.Scene | str | Path) -> trimesh.Trimesh:
        """Load/flatten the input, merge duplicate vertices, decimate to ``REMESH_MAX_FACES`` when
        ``use_remesh``, then UV-unwrap (vertices split along seams)."""
        from hy3dpaint.uv import mesh_uv_wrap

        mesh = _as_trimesh(mesh)
        if len(mesh.faces) > MAX_INPUT_FACES:
            raise ValueError(f"mesh has {len(mesh.faces)} faces; at most {MAX_INPUT_FACES} are accepted")
        if self.config.use_remesh:
            from hy3dcore.mesh import FaceReducer

            mesh = FaceReducer()(mesh, REMESH_MAX_FACES)
        return mesh_uv_wrap(mesh, self.config.uv_method, texture_size=self.config.texture_size)

    def make_renderer(self, mesh: trimesh.Trimesh):
        """A ``MeshRenderer`` of the UV-mapped mesh at the configured render and texture sizes."""
        from hy3dpaint.render.mesh_renderer import MeshRenderer

        return MeshRenderer.from_trimesh(mesh, texture_size=self.config.texture_size,
                                         render_size=self.config.render_size, device=self.config.device)

    def render_conditions(self, renderer, callback: ProgressCallback | None = None) -> ConditionRenders:
        """Select the views, render normal and position maps at the render size (uint8 =
        floor(255 v)) and resize them to the view size (PIL bicubic). Reports ``paint:render`` per view."""
        from hy3dpaint.render.mesh_renderer import to_uint8_image
        from hy3dpaint.view_selection import select_views

        views = select_views(renderer, self.config.max_num_view)
        size = (self.config.resolution, self.config.resolution)
        normals, positions = [], []
        for index, view in enumerate(views):
            for render, out in ((renderer.render_normal, normals), (renderer.render_position, positions)):
                image = Image.fromarray(to_uint8_image(render(view.elevation, view.azimuth)))
                out.append(image.resize(size, Image.Resampling.BICUBIC))
            report(callback, PHASE_RENDER, index + 1, len(views))
        return ConditionRenders(views=views, normal_maps=normals, position_maps=positions)

    def generate_views(self, image: Image.Image, conditions: ConditionRenders, seed: int,
                       callback: ProgressCallback | None = None) -> GeneratedViews:
        """Style image, DINO states and multiview diffusion: N albedo + N MR views at the view size.
        Reports ``paint:diffusion`` once per denoising step."""
        style = prepare_style_image(image, self.config.resolution)
        dino_hidden_states = self.dino(style)
        steps = self.config.num_inference_steps

        def step_done(step: int, *_tensors) -> None:
            report(callback, PHASE_DIFFUSION, step + 1, steps)

        output = self.multiview(style, conditions.normal_maps, conditions.position_maps, dino_hidden_states,
                                seed=seed, num_inference_steps=steps, guidance_scale=self.config.guidance_scale,
                                fast_guidance=self.config.fast_guidance, step_callback=step_done)
        return GeneratedViews(albedo=list(output.albedo), mr=list(output.mr))

    def upscale_views(self, views: GeneratedViews, callback: ProgressCallback | None = None) -> GeneratedViews:
        """Real-ESRGAN x4 on every view, then a bicubic resize to the render size where needed.
        Reports ``paint:upscale`` per view (its albedo and MR images).

        Upstream resizes only the first two views (a loop bug, FACTS §12.5); here every view is
        brought to the render size, which changes nothing at the default 512 -> 2048.
        """
        size = (self.config.render_size, self.config.render_size)

        def upscale(image: Image.Image) -> Image.Image:
            large = self.upscaler(image)
            return large if large.size == size else large.resize(size, Image.Resampling.BICUBIC)

        albedo, mr = [], []
        for index, (albedo_view, mr_view) in enumerate(zip(views.albedo, views.mr)):
            albedo.append(upscale(albedo_view))
            mr.append(upscale(mr_view))
            report(callback, PHASE_UPSCALE, index + 1, len(views.albedo))
        return GeneratedViews(albedo=albedo, mr=mr)

    def bake_textures(self, mesh: trimesh.Trimesh, renderer, views: Sequence, images: GeneratedViews,
                      callback: ProgressCallback | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Bake and inpaint the albedo and MR views: two uint8 [T, T, 3] textures (``paint:bake``)."""
        from hy3dpaint.bake import bake_and_inpaint

        textures = bake_and_inpaint(renderer, {"albedo": images.albedo, "mr": images.mr}, views,
                                    np.asarray(mesh.faces), inpaint_mode=self.config.inpaint_mode,
                                    callback=callback)
        return textures["albedo"], textures["mr"]

    def textured_mesh(self, mesh: trimesh.Trimesh, albedo: np.ndarray, mr: np.ndarray) -> trimesh.Trimesh:
        """The UV-mapped mesh with a glTF PBR material, assembled as upstream's export
        (``hy3dpaint.export.textured_mesh``: textures halved when ``halve_output_textures``,
        metallic/roughness read from the MR texture per ``mr_layout``)."""
        from hy3dpaint.export import textured_mesh

        return textured_mesh(np.asarray(mesh.vertices), np.asarray(mesh.faces), np.asarray(mesh.visual.uv),
                             albedo, mr, downsample=self.config.halve_output_textures, layout=self.config.mr_layout)

    # ------------------------------------------------------------------------------------------
    # Whole stage
    # ------------------------------------------------------------------------------------------

    def __call__(self, mesh: trimesh.Trimesh | trimesh.Scene | str | Path, image: Image.Image, *, seed: int = 0,
                 output_type: OutputType = "trimesh", texture_format: str = "jpeg",
                 callback: ProgressCallback | None = None) -> trimesh.Trimesh | bytes:
        """Paint ``mesh`` (trimesh, scene or file path; Y up, +Z front) after ``image`` (PIL RGB or
        RGBA, alpha = object mask). The same inputs and ``seed`` give the same textures.

        ``callback(phase, done, total)`` is called at step boundaries (``hy3dpaint.progress``:
        ``paint:uv``, ``paint:render``, ``paint:diffusion``, ``paint:upscale``, ``paint:bake``);
        what it raises propagates.

        Returns the textured ``trimesh.Trimesh``, or binary glTF bytes with ``output_type="glb"``
        (textures encoded as ``texture_format``, see ``hy3dpaint.export.export_glb``).
        """
        if output_type not in ("trimesh", "glb"):
            raise ValueError(f"output_type must be 'trimesh' or 'glb', got {output_type!r}")
        from hy3dpaint.export import TEXTURE_FORMATS

        if texture_format not in TEXTURE_FORMATS:
            raise ValueError(f"texture_format must be one of {', '.join(TEXTURE_FORMATS)}, got {texture_format!r}")
        if not isinstance(image, Image.Image):
            raise TypeError(f"image must be a PIL image, got {type(image).__name__}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        timings: dict[str, float] = {}
        with _timed(timings, "prepare_mesh"):
            uv_mesh = self.prepare_mesh(mesh)
        report(callback, PHASE_UV, 1, 1)
        with _timed(timings, "render_conditions"):
            renderer = self.make_renderer(uv_mesh)
            conditions = self.render_conditions(renderer, callback)
        with _timed(timings, "generate_views"):
            generated = self.generate_views(image, conditions, int(seed), callback)
        with _timed(timings, "upscale_views"):
            upscaled = self.upscale_views(generated, callback)
        del generated  # memory plan: free each phase's intermediates before the next one
        with _timed(timings, "bake_textures"):
            albedo, mr = self.bake_textures(uv_mesh, renderer, conditions.views, upscaled, callback)
        del upscaled, renderer
        textured = self.textured_mesh(uv_mesh, albedo, mr)
        logger.info("texture stage: %d faces, %d views, seed %d; %s", len(uv_mesh.faces), len(conditions.views),
                    seed, ", ".join(f"{name} {seconds:.2f} s" for name, seconds in timings.items()))
        if output_type == "glb":
            from hy3dpaint.export import export_glb

            return export_glb(textured, texture_format=texture_format)
        return textured


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    """Add the elapsed seconds of the ``with`` block to ``timings[name]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start


def _as_trimesh(mesh: trimesh.Trimesh | trimesh.Scene | str | Path) -> trimesh.Trimesh:
    """A plain mesh (vertices and faces only, duplicate vertices merged) from a mesh, scene or path."""
    if isinstance(mesh, (str, Path)):
        path = Path(mesh)
        if not path.is_file():
            raise FileNotFoundError(f"mesh file not found: {path}")
        mesh = trimesh.load(path, force="mesh")
    if isinstance(mesh, trimesh.Scene):
        if not mesh.geometry:
            raise ValueError("the mesh scene holds no geometry")
        mesh = mesh.to_geometry()
    if not isinstance(mesh, trimesh.Trimesh):
        raise TypeError(f"mesh must be a trimesh.Trimesh, a trimesh.Scene or a path, got {type(mesh).__name__}")
    if len(mesh.faces) == 0:
        raise ValueError("the mesh has no faces")
    return trimesh.Trimesh(vertices=np.asarray(mesh.vertices), faces=np.asarray(mesh.faces), process=True)

