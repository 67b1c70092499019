"""Image -> mesh pipeline of Hunyuan3D-2.1 (``Hunyuan3DDiTFlowMatchingPipeline``), FACTS §5-8.

Stages, each reachable as an attribute so it can be run alone: ``image_processor`` (recentre, 512 px),
``conditioner`` (DINOv2 tokens), ``model`` (the DiT, sampled by ``scheduler`` with classifier-free
guidance), ``vae`` (latents -> tokens; ``vae.geo_decoder`` -> occupancy), ``vae.volume_decoder``
(logit grid) and ``vae.surface_extractor`` (marching cubes).

Speed (docs/shape.md): the DiT's attention projections are fused and its MoE experts stacked once at
load (``model.fuse_weights()``), the zero-length last sampler step is skipped, ``compile=True`` (or
``compile_model()``) compiles the DiT with ``torch.compile``, and ``set_volume_decoder("flashvdm")`` /
``enable_flashvdm()`` switch from the dense grid (default, the parity reference) to FlashVDM decoding.

Progress: ``pipe(..., callback=fn)`` calls ``fn(phase, done, total)`` with ``"shape:denoise"`` once per
sampler step (``done = i + 1``, ``total = num_inference_steps``) and ``"shape:decode"`` once per decoding
chunk or level; an exception raised by ``fn`` (e.g. a cancellation) propagates.

Seeds: the initial noise is drawn on the CPU from the given ``torch.Generator`` (a CUDA generator
draws on its device), in the pipeline dtype, then moved to the model's device, so a seed gives the
same shape as upstream's app on any GPU. Without a generator the noise comes from torch's global CPU
generator (``torch.manual_seed``); upstream would use the global RNG of the model's device instead.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import trimesh

from hy3dshape.loading import DEFAULT_SUBFOLDER, DEFAULT_VARIANT, load_components, resolve_model_folder
from hy3dshape.models.conditioner import SingleImageEncoder
from hy3dshape.models.dit import HunYuanDiTPlain
from hy3dshape.models.vae import ShapeVAE
from hy3dshape.preprocessors import ImageInput, ImageProcessorV2
from hy3dshape.schedulers import FlowMatchEulerDiscreteScheduler
from hy3dshape.volume_decoders import (
    MAX_OCTREE_RESOLUTION,
    MIN_OCTREE_RESOLUTION,
    VOLUME_DECODERS,
    FlashVDMVolumeDecoder,
    ProgressCallback,
)

logger = logging.getLogger(__name__)

#: Call defaults of upstream's pipeline (FACTS §5).
DEFAULT_NUM_INFERENCE_STEPS = 50
DEFAULT_GUIDANCE_SCALE = 5.0
DEFAULT_OCTREE_RESOLUTION = 384
DEFAULT_BOX_V = 1.01
DEFAULT_MC_LEVEL = 0.0
#: Largest number of images in one call.
MAX_BATCH_SIZE = 64
OUTPUT_TYPES = ("trimesh", "mesh", "latent")
#: Surface extraction algorithms of ``enable_flashvdm(mc_algo=...)`` (upstream's ``dmc`` needs CUDA ``diso``).
MC_ALGOS = ("mc",)
#: Phase name of the progress callback for the sampler steps.
DENOISE_PHASE = "shape:denoise"
#: ``torch.compile`` mode of ``compile_model()`` per device type (CUDA graphs on CUDA).
COMPILE_MODES = {"cuda": "reduce-overhead", "cpu": "default"}
SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@dataclass
class Latent2MeshOutput:
    """Raw mesh arrays (``output_type="mesh"``): world-space vertices, outward-facing faces."""

    mesh_v: np.ndarray
    mesh_f: np.ndarray


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _check_dtype(dtype: torch.dtype) -> torch.dtype:
    if dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"dtype {dtype} is not supported; allowed: {[str(d) for d in SUPPORTED_DTYPES]}")
    return dtype


class Hunyuan3DDiTFlowMatchingPipeline:
    """Hunyuan3D-2.1 shape generation: ``pipe(image=...)`` -> one mesh per image."""

    def __init__(
        self,
        vae: ShapeVAE,
        model: HunYuanDiTPlain,
        scheduler: FlowMatchEulerDiscreteScheduler,
        conditioner: SingleImageEncoder,
        image_processor: ImageProcessorV2,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        self.vae = vae
        self.model = model
        self.scheduler = scheduler
        self.conditioner = conditioner
        self.image_processor = image_processor
        self.device = torch.device(device)
        self.dtype = _check_dtype(dtype)

    @classmethod
    def from_pretrained(
        cls,
        model_path: str | Path,
        subfolder: str | None = DEFAULT_SUBFOLDER,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        use_safetensors: bool = False,
        variant: str | None = DEFAULT_VARIANT,
        compile: bool = False,
    ) -> Hunyuan3DDiTFlowMatchingPipeline:
        """Load ``<model_path>/<subfolder>/config.yaml`` and ``model.<variant>.{ckpt|safetensors}``.

        ``model_path`` is a local folder; nothing is downloaded. ``device`` defaults to CUDA when
        available, else CPU; ``dtype`` defaults to float16 on CUDA and float32 on CPU. The three networks
        are loaded strictly (see ``hy3dshape.loading``), cast to ``dtype`` once, and put in eval mode;
        the DiT's weights are then fused for inference (``fuse_weights``, same keys and values).
        ``compile=True`` also compiles the DiT (``compile_model``). Raises ``hy3dcore.loading.WeightsError`` naming the missing folder, file or key (``ConfigError``, a subclass, for the config).
        """
        device = torch.device(device) if device is not None else _default_device()
        if dtype is None:
            dtype = torch.float16 if device.type == "cuda" else torch.float32
        dtype = _check_dtype(dtype)
        folder = resolve_model_folder(model_path, subfolder)
        components = load_components(folder, device=device, dtype=dtype, use_safetensors=use_safetensors, variant=variant)
        components["model"].fuse_weights()
        pipe = cls(**components, device=device, dtype=dtype)
        if compile:
            pipe.compile_model()
        return pipe

    def compile_model(self, mode: str | None = None) -> None:
        """Compile the DiT in place with ``torch.compile`` (``COMPILE_MODES`` by device unless ``mode``).

        The first denoising steps are slow while it compiles; later ones are faster on CUDA. The module
        keeps its type, parameters and hooks.
        """
        mode = mode or COMPILE_MODES.get(self.device.type, "default")
        logger.info("compiling the DiT with torch.compile (mode %s)", mode)
        self.model.compile(mode=mode, dynamic=False)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Hunyuan3DDiTFlowMatchingPipeline:
        """Move (and optionally cast) the three networks; returns ``self``."""
        if device is not None:
            self.device = torch.device(device)
        if dtype is not None:
            self.dtype = _check_dtype(dtype)
        for network in (self.conditioner, self.model, self.vae):
            network.to(device=self.device, dtype=self.dtype)
        return self

    def set_volume_decoder(self, volume_decoder: str | Any) -> None:
        """Choose the volume decoding: ``"dense"`` (default, as upstream; the parity reference),
        ``"hierarchical"`` (upstream's coarse to fine), ``"flashvdm"`` (coarse to fine with a scale-free
        refinement test and adaptive key/value selection, as ``enable_flashvdm()``) or a decoder object
        with the same call signature. Raises ``ValueError`` for an unknown name."""
        if isinstance(volume_decoder, str):
            if volume_decoder not in VOLUME_DECODERS:
                raise ValueError(f"unknown volume decoder {volume_decoder!r}; allowed: {sorted(VOLUME_DECODERS)}")
            volume_decoder = VOLUME_DECODERS[volume_decoder]()
        elif not callable(volume_decoder):
            raise TypeError(f"volume_decoder must be a name or a callable, got {type(volume_decoder).__name__}")
        self.vae.volume_decoder = volume_decoder

    def enable_flashvdm(
        self,
        enabled: bool = True,
        adaptive_kv_selection: bool = True,
        topk_mode: str = "mean",
        mc_algo: str = "mc",
    ) -> None:
        """Upstream's switch: FlashVDM volume decoding (``FlashVDMVolumeDecoder``) when ``enabled``, else
        the dense decoder. ``topk_mode``: ``"mean"`` or ``"merge"`` (see ``KVSelection``); ``mc_algo``: only
        ``"mc"`` (marching cubes; NaN cells of the sparse grid are filled by the surface extractor).
        Raises ``ValueError`` for an unsupported ``topk_mode`` or ``mc_algo``."""
        if mc_algo not in MC_ALGOS:
            raise ValueError(f"mc_algo must be one of {list(MC_ALGOS)} (dmc needs CUDA diso), got {mc_algo!r}")
        if not enabled:
            self.set_volume_decoder("dense")
            return
        self.set_volume_decoder(FlashVDMVolumeDecoder(adaptive_kv_selection=adaptive_kv_selection,
                                                      topk_mode=topk_mode))

    # ------------------------------------------------------------------ stages

    def encode_condition(self, image: torch.Tensor, do_classifier_free_guidance: bool) -> torch.Tensor:
        """Preprocessed images ``[B, 3, S, S]`` -> context ``[B or 2B, T, D]``: ``[cond; zeros]`` with CFG."""
        cond = self.conditioner(image=image.to(self.device))["main"].to(self.dtype)
        if not do_classifier_free_guidance:
            return cond
        uncond = self.conditioner.unconditional_embedding(cond.shape[0])["main"].to(self.dtype)
        return torch.cat([cond, uncond], dim=0)

    def prepare_latents(
        self, batch_size: int, generator: torch.Generator | Sequence[torch.Generator] | None
    ) -> torch.Tensor:
        """Initial noise ``[B, num_latents, embed_dim]`` in the pipeline dtype (see the module docstring)."""
        shape = (self.vae.num_latents, self.vae.embed_dim)
        if isinstance(generator, (list, tuple)):
            if len(generator) != batch_size:
                raise ValueError(f"got {len(generator)} generators for {batch_size} images; pass one per image")
            rows = [torch.randn((1, *shape), generator=g, device=g.device, dtype=self.dtype) for g in generator]
            noise = torch.cat([row.to(self.device) for row in rows])
        else:
            rand_device = generator.device if generator is not None else torch.device("cpu")
            noise = torch.randn((batch_size, *shape), generator=generator, device=rand_device, dtype=self.dtype)
        return noise.to(self.device)

    def denoise(self, latents: torch.Tensor, context: torch.Tensor, num_inference_steps: int, guidance_scale: float,
                callback: ProgressCallback | None = None) -> torch.Tensor:
        """Flow-matching Euler sampling with classifier-free guidance (on whenever ``guidance_scale >= 0``).

        The last step of the schedule has zero length, so its model call is skipped (upstream makes it
        and multiplies the result by 0; the latents are identical): at most ``1 / steps`` of the calls.
        ``callback("shape:denoise", i + 1, steps)`` after every step, the skipped one included.
        """
        do_cfg = guidance_scale >= 0
        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        for index, timestep in enumerate(self.scheduler.timesteps):
            if self.scheduler.step_size() == 0.0:
                latents = self.scheduler.skip_step(latents).prev_sample
                if callback is not None:
                    callback(DENOISE_PHASE, index + 1, num_inference_steps)
                continue
            model_input = torch.cat([latents, latents]) if do_cfg else latents
            # As upstream: cast the scheduler timestep to the latent dtype, then divide.
            t = timestep.to(latents.dtype).expand(model_input.shape[0]) / self.scheduler.num_train_timesteps
            velocity = self.model(model_input, t, {"main": context})
            if do_cfg:
                v_cond, v_uncond = velocity.chunk(2)
                velocity = v_uncond + guidance_scale * (v_cond - v_uncond)
            latents = self.scheduler.step(velocity, timestep, latents).prev_sample
            logger.debug("denoising step %d/%d done", index + 1, num_inference_steps)
            if callback is not None:
                callback(DENOISE_PHASE, index + 1, num_inference_steps)
        return latents

    def decode_volume(
        self, latents: torch.Tensor, box_v: float, octree_resolution: int, num_chunks: int | None, mc_level: float,
        callback: ProgressCallback | None = None,
    ) -> torch.Tensor:
        """Latents -> float32 logit grid ``[B, R + 1, R + 1, R + 1]`` via ``vae`` and ``vae.volume_decoder``
        (FlashVDM leaves NaN where nothing was decoded). ``num_chunks=None``: chunk size by device."""
        tokens = self.vae(latents * (1.0 / self.vae.scale_factor))  # upstream multiplies by the reciprocal
        return self.vae.volume_decoder(
            tokens,
            self.vae.geo_decoder,
            bounds=box_v,
            num_chunks=num_chunks,
            octree_resolution=octree_resolution,
            mc_level=mc_level,
            **({} if callback is None else {"callback": callback}),
        )

    # ------------------------------------------------------------------ call

    @torch.inference_mode()
    def __call__(
        self,
        image: ImageInput | Sequence[ImageInput],
        num_inference_steps: int = DEFAULT_NUM_INFERENCE_STEPS,
        guidance_scale: float = DEFAULT_GUIDANCE_SCALE,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        box_v: float = DEFAULT_BOX_V,
        octree_resolution: int = DEFAULT_OCTREE_RESOLUTION,
        mc_level: float = DEFAULT_MC_LEVEL,
        num_chunks: int | None = None,
        output_type: str = "trimesh",
        enable_pbar: bool = False,
        callback: Callable[[str, int, int], None] | None = None,
    ) -> list[Any]:
        """Generate one result per image.

        ``image``: PIL image (RGBA: alpha is the object mask; RGB: the whole frame), uint8 array, path,
        or a list of those. ``output_type``: ``"trimesh"`` -> ``trimesh.Trimesh`` (``None`` where surface
        extraction failed), ``"mesh"`` -> ``Latent2MeshOutput`` (or ``None``), ``"latent"`` -> latents
        ``[num_latents, embed_dim]`` tensors. ``enable_pbar`` logs progress at INFO. ``num_chunks``: query
        points per geometry-decoder call (``None``, the default: chosen by device and memory budget;
        upstream's fixed default was 8000). ``callback(phase, done, total)``: see the module docstring.
        Raises ``ValueError`` naming the argument that is out of range.
        """
        images = list(image) if isinstance(image, (list, tuple)) else [image]
        self._check_call(len(images), num_inference_steps, guidance_scale, box_v, octree_resolution, mc_level,
                         num_chunks, output_type)
        log = logger.info if enable_pbar else logger.debug
        started = time.perf_counter()
        processed = self.image_processor(images)["image"]
        context = self.encode_condition(processed, do_classifier_free_guidance=guidance_scale >= 0)
        latents = self.prepare_latents(len(images), generator)
        log("conditioning done in %.2f s", time.perf_counter() - started)
        latents = self.denoise(latents, context, num_inference_steps, float(guidance_scale), callback)
        log("denoising (%d steps) done in %.2f s", num_inference_steps, time.perf_counter() - started)
        if output_type == "latent":
            return list(latents)
        grid = self.decode_volume(latents, float(box_v), int(octree_resolution),
                                  None if num_chunks is None else int(num_chunks), float(mc_level), callback)
        log("volume decoding at R=%d done in %.2f s", octree_resolution, time.perf_counter() - started)
        meshes = self.vae.surface_extractor(grid, float(mc_level), float(box_v), int(octree_resolution))
        log("surface extraction done in %.2f s", time.perf_counter() - started)
        if output_type == "mesh":
            return [None if mesh is None else Latent2MeshOutput(*mesh) for mesh in meshes]
        return [None if mesh is None else trimesh.Trimesh(vertices=mesh[0], faces=mesh[1]) for mesh in meshes]

    @staticmethod
    def _check_call(
        batch_size: int,
        num_inference_steps: Any,
        guidance_scale: Any,
        box_v: Any,
        octree_resolution: Any,
        mc_level: Any,
        num_chunks: Any,
        output_type: Any,
    ) -> None:
        def is_int(value: Any) -> bool:
            return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

        def is_number(value: Any) -> bool:
            return isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value)

        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"image: got {batch_size} images; between 1 and {MAX_BATCH_SIZE} are allowed")
        if not is_int(num_inference_steps) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be a positive integer, got {num_inference_steps!r}")
        if not is_number(guidance_scale):
            raise ValueError(f"guidance_scale must be a finite number (negative disables CFG), got {guidance_scale!r}")
        if not is_number(box_v) or box_v <= 0:
            raise ValueError(f"box_v must be a positive number (half side of the decoded cube), got {box_v!r}")
        if not is_int(octree_resolution) or not MIN_OCTREE_RESOLUTION <= octree_resolution <= MAX_OCTREE_RESOLUTION:
            raise ValueError(
                f"octree_resolution must be an integer in [{MIN_OCTREE_RESOLUTION}, {MAX_OCTREE_RESOLUTION}], "
                f"got {octree_resolution!r}"
            )
        if not is_number(mc_level):
            raise ValueError(f"mc_level must be a finite number, got {mc_level!r}")
        if num_chunks is not None and (not is_int(num_chunks) or num_chunks < 1):
            raise ValueError(
                f"num_chunks must be a positive integer (query points per decoder call) or None, got {num_chunks!r}"
            )
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {list(OUTPUT_TYPES)}, got {output_type!r}")
