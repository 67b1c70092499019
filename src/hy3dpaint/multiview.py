"""The multiview PBR diffusion pipeline (FACTS §6-7): condition encodes -> triple-batch CFG UniPC
sampling with the UNet 2.5D -> VAE decode. Produces N albedo and N metallic-roughness views.

Blocks, each usable on its own (tests feed recorded tensors into them):

* ``encode_conditions``: style image, normal maps and position maps -> VAE latents (posterior
  *samples*, as upstream) and the fp16 position maps for the voxel RoPE;
* ``denoise``: UniPC (trailing, v-prediction, zero-SNR) from initial noise, with guidance
  ``u + g (r - u) + g (f - r)`` over the branches u (no reference, no DINO), r (reference) and
  f (reference + DINO);
* ``decode``: VAE decode to images in [0, 1], albedo views first.

Seeds: one CPU ``torch.Generator`` seeded with ``seed`` draws the initial noise, a second one seeded
with the same value draws the posterior samples (reference, normals, positions, in that order). Both
live on the CPU, so a seed gives the same result on any device (up to the device's arithmetic).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from diffusers import AutoencoderKL, UniPCMultistepScheduler
from PIL import Image

from hy3dcore.loading import WeightsError, read_json
from hy3dpaint.models.attention_processors import MATERIALS
from hy3dpaint.models.unet_2p5d import DINO_WIDTH, LATENT_CHANNELS, UNet2p5DConditionModel
from hy3dpaint.models.vae import load_autoencoder

logger = logging.getLogger(__name__)

#: Defaults of upstream's texture generation.
DEFAULT_NUM_INFERENCE_STEPS = 15
DEFAULT_GUIDANCE_SCALE = 3.0
#: Latent downsampling of the VAE: view sizes must be a multiple of it. Any latent size works (the
#: RoPE grids are built with floor division, as upstream: a 96 px view has grids 12, 6, 3 and 1).
VAE_DOWNSAMPLING = 8
LATENT_SIZE_MULTIPLE = 1
#: Resolution the style image passes through before the resize to the view size (upstream step).
STYLE_IMAGE_SIZE = 512
#: Background of composited RGBA images.
WHITE = (255, 255, 255)
#: Components of the weights folder that upstream loads but never uses at inference.
DEAD_COMPONENTS = ("text_encoder", "tokenizer", "feature_extractor", "image_encoder", "safety_checker")
#: Components this pipeline loads.
REQUIRED_COMPONENTS = ("unet", "vae", "scheduler")
#: Classifier-free-guidance branches, in batch order.
CFG_BRANCHES = ("uncond", "ref", "full")

OutputType = Literal["pil", "np", "latent"]
StepCallback = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], None]


@dataclass
class MultiviewConditions:
    """Encoded conditions of one generation (batch 1).

    ``ref_latents`` [1, 1, 4, h, w], ``normal_latents`` and ``position_latents`` [1, N, 4, h, w]
    (VAE posterior samples x scaling factor), ``position_maps`` [1, N, 3, H, W] fp16 in [0, 1].
    """

    ref_latents: torch.Tensor
    normal_latents: torch.Tensor
    position_latents: torch.Tensor
    position_maps: torch.Tensor

    @property
    def num_views(self) -> int:
        return self.normal_latents.shape[1]


@dataclass
class MultiviewPBROutput:
    """Generated views in the selection order: ``albedo`` and ``mr`` (metallic-roughness), each a
    list of N PIL RGB images (``output_type="pil"``) or an array [N, H, W, 3] in [0, 1] (``"np"``)."""

    albedo: list[Image.Image] | np.ndarray
    mr: list[Image.Image] | np.ndarray


def _flatten_on_white(image: Image.Image) -> Image.Image:
    """RGB image; transparent pixels are composited over white."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, WHITE)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image.convert("RGB")


def prepare_style_image(image: Image.Image, view_size: int) -> Image.Image:
    """Upstream's style step: resize to 512 (bicubic, premultiplied for RGBA), composite on white,
    then resize to the view size (bicubic). Returns an RGB image ``view_size`` square."""
    resized = image.resize((STYLE_IMAGE_SIZE, STYLE_IMAGE_SIZE), Image.Resampling.BICUBIC)
    return _flatten_on_white(resized).resize((view_size, view_size), Image.Resampling.BICUBIC)


def _rgb_over_white(image: Image.Image) -> np.ndarray:
    """float32 [H, W, 3] in [0, 1]; RGBA is composited over white in float (as upstream)."""
    if image.mode not in ("RGB", "RGBA"):
        transparent = image.mode in ("LA", "PA") or "transparency" in image.info
        image = image.convert("RGBA" if transparent else "RGB")
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    if pixels.shape[2] == 4:
        alpha = pixels[:, :, 3:]
        pixels = pixels[:, :, :3] * alpha + (1.0 - alpha)
    return pixels


def condition_maps_to_tensor(images: Sequence[Image.Image]) -> torch.Tensor:
    """PIL condition maps -> fp16 [1, N, 3, H, W] = fp16(uint8 / 255), as upstream builds them."""
    arrays = [torch.from_numpy(_rgb_over_white(image)).permute(2, 0, 1) for image in images]
    return torch.stack(arrays).unsqueeze(0).half()


def unipc_scheduler_from_config(config: dict) -> UniPCMultistepScheduler:
    """UniPC with upstream's settings from the folder's (DDIM) scheduler config: trailing spacing,
    order 2, bh2, the folder's prediction type (v) and zero-terminal-SNR rescale."""
    config = {key: value for key, value in config.items() if not key.startswith("_")}
    return UniPCMultistepScheduler.from_config(config, timestep_spacing="trailing")


class MultiviewPBRDiffusionPipeline:
    """Multiview PBR diffusion of Hunyuan3D-Paint 2.1 (see the module doc).

    Load with ``from_pretrained(<weights>/hunyuan3d-paintpbr-v2-1, device=..., dtype=...)``; call
    with the style image, the N normal and position maps (PIL, view size) and the DINO states.
    """

    def __init__(self, unet: UNet2p5DConditionModel, vae: AutoencoderKL, scheduler_config: dict):
        self.unet = unet
        self.vae = vae
        self.scheduler_config = dict(scheduler_config)
        unipc_scheduler_from_config(self.scheduler_config)  # validate now, not at the first call

    @classmethod
    def from_pretrained(cls, folder: str | Path, *, device: torch.device | str = "cpu",
                        dtype: torch.dtype | None = None) -> MultiviewPBRDiffusionPipeline:
        """Load ``model_index.json``, ``unet/``, ``vae/`` and ``scheduler/`` from a local folder.

        ``dtype`` defaults to fp16 on CUDA and fp32 elsewhere. The dead components (text encoder,
        tokenizer, feature extractor, image encoder) are not loaded. Raises ``WeightsError`` naming
        the missing or malformed file (and key).
        """
        folder = Path(folder)
        device = torch.device(device)
        dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)
        if not folder.is_dir():
            raise WeightsError(f"{folder}: multiview model folder not found")
        index_path = folder / "model_index.json"
        index = read_json(index_path)
        for component in REQUIRED_COMPONENTS:
            if component not in index:
                raise WeightsError(f"{index_path}: missing component {component!r}; "
                                   f"expected {', '.join(REQUIRED_COMPONENTS)}")
        skipped = [name for name in DEAD_COMPONENTS if index.get(name) not in (None, [None, None])]
        if skipped:
            logger.info("not loading unused components of %s: %s", folder, ", ".join(skipped))
        unet = UNet2p5DConditionModel.from_pretrained(folder / "unet", device=device, dtype=dtype)
        vae = load_autoencoder(folder / "vae", device=device, dtype=dtype)
        scheduler_path = folder / "scheduler" / "scheduler_config.json"
        scheduler_config = read_json(scheduler_path)
        try:
            return cls(unet, vae, scheduler_config)
        except (TypeError, ValueError) as error:
            raise WeightsError(f"{scheduler_path}: not a valid scheduler config ({error})") from error

    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    def make_scheduler(self) -> UniPCMultistepScheduler:
        """A fresh UniPC scheduler (schedulers are stateful; one per generation)."""
        return unipc_scheduler_from_config(self.scheduler_config)

    # ------------------------------------------------------------------------------------------
    # Encode
    # ------------------------------------------------------------------------------------------

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """VAE posterior samples x scaling factor for images [B, N, 3, H, W] in [0, 1].

        ``(x - 0.5) * 2`` runs in the images' dtype (fp16 for condition maps, as upstream), then the
        tensor is cast to the VAE's dtype. The noise is drawn in fp32 from the CPU ``generator``.
        """
        batch, views = images.shape[:2]
        scaled = ((images - 0.5) * 2.0).flatten(0, 1).to(device=self.vae.device, dtype=self.vae.dtype)
        posterior = self.vae.encode(scaled).latent_dist
        noise = torch.randn(posterior.mean.shape, generator=generator, dtype=torch.float32, device="cpu")
        latents = posterior.mean + posterior.std * noise.to(device=posterior.mean.device, dtype=posterior.mean.dtype)
        latents = latents * self.vae.config.scaling_factor
        return latents.reshape(batch, views, *latents.shape[1:])

    def encode_conditions(self, style_image: Image.Image, normal_maps: Sequence[Image.Image],
                          position_maps: Sequence[Image.Image], generator: torch.Generator) -> MultiviewConditions:
        """Encode the style image and the condition maps (all at the view size), drawing the
        posterior samples from ``generator`` in the order reference, normals, positions."""
        view_size = self._check_inputs(style_image, normal_maps, position_maps)
        logger.debug("encoding %d views at %d px", len(normal_maps), view_size)
        # Reference: float64 /255, cast to the pipeline dtype before the VAE scaling (as upstream).
        # Memory layouts follow upstream too (a permuted view here, contiguous condition maps): on
        # the CPU the VAE's convolutions round differently for channels-last strides (~2e-4).
        reference = torch.from_numpy(np.asarray(_flatten_on_white(style_image), dtype=np.float64) / 255.0)
        reference = reference.permute(2, 0, 1)[None, None].to(device=self.device, dtype=self.dtype)
        normals = condition_maps_to_tensor(normal_maps).to(self.device)
        positions = condition_maps_to_tensor(position_maps).to(self.device)
        return MultiviewConditions(
            ref_latents=self.encode_images(reference, generator),
            normal_latents=self.encode_images(normals, generator),
            position_latents=self.encode_images(positions, generator),
            position_maps=positions,
        )

    def _check_inputs(self, style_image: Image.Image, normal_maps: Sequence[Image.Image],
                      position_maps: Sequence[Image.Image]) -> int:
        if not normal_maps or len(normal_maps) != len(position_maps):
            raise ValueError(f"need the same number (>= 1) of normal and position maps, got "
                             f"{len(normal_maps)} and {len(position_maps)}")
        view_size = style_image.size[0]
        if style_image.size != (view_size, view_size):
            raise ValueError(f"style image must be square at the view size, got {style_image.size}")
        multiple = VAE_DOWNSAMPLING * LATENT_SIZE_MULTIPLE
        if view_size % multiple:
            raise ValueError(f"view size {view_size} must be a multiple of {multiple}")
        for kind, maps in (("normal", normal_maps), ("position", position_maps)):
            for index, image in enumerate(maps):
                if image.size != (view_size, view_size):
                    raise ValueError(f"{kind} map {index} is {image.size[0]}x{image.size[1]}; all images must be "
                                     f"{view_size}x{view_size} (the style image's size)")
        return view_size

    # ------------------------------------------------------------------------------------------
    # Denoise
    # ------------------------------------------------------------------------------------------

    def initial_noise(self, num_views: int, view_size: int, generator: torch.Generator) -> torch.Tensor:
        """Initial latents [2N, 4, h, w] (albedo views first) drawn in fp32 from a CPU generator."""
        latent_size = view_size // VAE_DOWNSAMPLING
        shape = (len(MATERIALS) * num_views, LATENT_CHANNELS, latent_size, latent_size)
        return torch.randn(shape, generator=generator, dtype=torch.float32, device="cpu")

    @torch.no_grad()
    def denoise(self, conditions: MultiviewConditions, dino_hidden_states: torch.Tensor, latents: torch.Tensor, *,
                num_inference_steps: int = DEFAULT_NUM_INFERENCE_STEPS,
                guidance_scale: float = DEFAULT_GUIDANCE_SCALE, fast_guidance: bool = False,
                step_callback: StepCallback | None = None) -> torch.Tensor:
        """Run UniPC from ``latents`` [2N, 4, h, w]; return the final latents (pipeline dtype).

        With ``guidance_scale > 1`` every step evaluates the branches u, r, f in one batch and
        combines them as ``u + g (r - u) + g (f - r)`` (upstream's per-view scales are all 1).
        ``fast_guidance`` drops the r branch, which cancels algebraically (``u + g (f - u)``), for
        a third less compute; results then differ from upstream's by rounding only. With
        ``guidance_scale <= 1`` only f runs. ``step_callback(i, t, guided_noise, latents)`` sees
        each step's combined prediction and the latents after the step.
        """
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        n_views, n_materials = conditions.num_views, len(MATERIALS)
        if dino_hidden_states.ndim != 3 or dino_hidden_states.shape[0] != 1 or dino_hidden_states.shape[2] != DINO_WIDTH:
            raise ValueError(f"dino_hidden_states must be [1, T, {DINO_WIDTH}], got {list(dino_hidden_states.shape)}")
        expected = (n_materials * n_views, LATENT_CHANNELS, *conditions.normal_latents.shape[-2:])
        if tuple(latents.shape) != expected:
            raise ValueError(f"latents must be {list(expected)}, got {list(latents.shape)}")

        device, dtype = self.device, self.dtype
        branches = self._guidance_branches(guidance_scale, fast_guidance)
        batch = len(branches)
        dino = dino_hidden_states.to(device=device, dtype=dtype)
        dino_batch = torch.cat([dino if branch == "full" else torch.zeros_like(dino) for branch in branches])
        ref_scale = torch.tensor([0.0 if branch == "uncond" else 1.0 for branch in branches], device=device, dtype=dtype)

        def per_branch(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.to(device=device, dtype=dtype).expand(batch, *tensor.shape[1:])

        text = per_branch(self.unet.learned_text_embeddings())
        unet_kwargs = dict(
            embeds_normal=per_branch(conditions.normal_latents),
            embeds_position=per_branch(conditions.position_latents),
            # The reference stream runs once on batch 1; its features are shared by every branch.
            ref_latents=conditions.ref_latents.to(device=device, dtype=dtype),
            dino_hidden_states=dino_batch,
            # A copy: the voxel-index code zeroes the background of fp16 maps in place (FACTS §7.4).
            position_maps=conditions.position_maps.to(device).clone(),
            ref_scale=ref_scale,
            cache={},
        )
        scheduler = self.make_scheduler()
        scheduler.set_timesteps(num_inference_steps, device=device)
        latents = latents.to(device=device, dtype=dtype) * scheduler.init_noise_sigma
        latent_shape = (n_materials, n_views, *latents.shape[1:])
        for step, timestep in enumerate(scheduler.timesteps):
            model_input = scheduler.scale_model_input(latents, timestep).reshape(1, *latent_shape)
            model_input = model_input.expand(batch, *latent_shape)
            prediction = self.unet(model_input, timestep, text, **unet_kwargs).sample
            guided = self._combine(prediction.chunk(batch), branches, guidance_scale)
            latents = scheduler.step(guided, timestep, latents, return_dict=False)[0]
            if step_callback is not None:
                step_callback(step, timestep, guided, latents)
            logger.debug("denoising step %d/%d (t=%d) done", step + 1, num_inference_steps, int(timestep))
        return latents

    @staticmethod
    def _guidance_branches(guidance_scale: float, fast_guidance: bool) -> tuple[str, ...]:
        if guidance_scale <= 1.0:
            return ("full",)
        return ("uncond", "full") if fast_guidance else CFG_BRANCHES

    @staticmethod
    def _combine(predictions: Sequence[torch.Tensor], branches: tuple[str, ...], guidance_scale: float) -> torch.Tensor:
        by_branch = dict(zip(branches, predictions))
        full = by_branch["full"]
        if len(branches) == 1:
            return full
        uncond = by_branch["uncond"]
        if "ref" not in by_branch:
            return uncond + guidance_scale * (full - uncond)
        ref = by_branch["ref"]
        view_scale = 1.0  # upstream's camera_azims are never passed, so every view's scale is 1
        guided = uncond + guidance_scale * view_scale * (ref - uncond)
        return guided + guidance_scale * view_scale * (full - ref)

    # ------------------------------------------------------------------------------------------
    # Decode
    # ------------------------------------------------------------------------------------------

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """VAE decode [2N, 4, h, w] -> float32 images [2N, H, W, 3] in [0, 1] on the CPU."""
        images = self.vae.decode(latents.to(self.vae.dtype) / self.vae.config.scaling_factor).sample
        return (images / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).float().cpu()

    # ------------------------------------------------------------------------------------------
    # Whole generation
    # ------------------------------------------------------------------------------------------

    def __call__(self, style_image: Image.Image, normal_maps: Sequence[Image.Image],
                 position_maps: Sequence[Image.Image], dino_hidden_states: torch.Tensor, *, seed: int = 0,
                 num_inference_steps: int = DEFAULT_NUM_INFERENCE_STEPS,
                 guidance_scale: float = DEFAULT_GUIDANCE_SCALE, fast_guidance: bool = False,
                 output_type: OutputType = "pil", step_callback: StepCallback | None = None) -> MultiviewPBROutput:
        """Generate N albedo and N MR views.

        ``style_image``, ``normal_maps`` and ``position_maps`` are PIL images at the view size
        (a multiple of 8); ``dino_hidden_states`` [1, T, 1536] (see ``hy3dpaint.dino``). The
        same inputs and ``seed`` give the same views. ``output_type``: "pil", "np" (floats in
        [0, 1]) or "latent" (the albedo/MR halves of the final latents). ``step_callback`` is
        passed to :meth:`denoise` (called after every denoising step).
        """
        if output_type not in ("pil", "np", "latent"):
            raise ValueError(f"output_type must be 'pil', 'np' or 'latent', got {output_type!r}")
        posterior_generator = torch.Generator("cpu").manual_seed(seed)
        noise_generator = torch.Generator("cpu").manual_seed(seed)
        conditions = self.encode_conditions(style_image, normal_maps, position_maps, posterior_generator)
        latents = self.initial_noise(conditions.num_views, style_image.size[0], noise_generator)
        latents = self.denoise(conditions, dino_hidden_states, latents, num_inference_steps=num_inference_steps,
                               guidance_scale=guidance_scale, fast_guidance=fast_guidance,
                               step_callback=step_callback)
        n_views = conditions.num_views
        if output_type == "latent":
            return MultiviewPBROutput(albedo=latents[:n_views], mr=latents[n_views:])
        images = self.decode(latents).numpy()
        if output_type == "np":
            return MultiviewPBROutput(albedo=images[:n_views], mr=images[n_views:])
        pil = [Image.fromarray((image * 255).round().astype(np.uint8)) for image in images]
        return MultiviewPBROutput(albedo=pil[:n_views], mr=pil[n_views:])
