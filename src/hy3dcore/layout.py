"""Folder and file names of the official Hunyuan3D-2.1 weights layout, defined once for every package.

``HY3D_WEIGHTS_DIR`` (or any ``weights_dir``) is laid out like the Hugging Face repositories::

    <weights>/hunyuan3d-dit-v2-1/config.yaml + model.fp16.ckpt (or model.fp16.safetensors)
    <weights>/hunyuan3d-paintpbr-v2-1/model_index.json, unet/, vae/, scheduler/
    <weights>/dinov2-giant/config.json + model.safetensors
    <weights>/RealESRGAN_x4plus.pth
"""

from __future__ import annotations

#: The shape model (DiT + VAE + DINOv2-L conditioner in one checkpoint).
SHAPE_SUBFOLDER = "hunyuan3d-dit-v2-1"
#: The multiview PBR diffusion model of the texture stage (a diffusers pipeline folder).
PAINT_SUBFOLDER = "hunyuan3d-paintpbr-v2-1"
#: DINOv2-giant, the texture stage's image encoder (``facebook/dinov2-giant``).
DINO_SUBFOLDER = "dinov2-giant"
#: Real-ESRGAN x4plus weights of the texture stage's super-resolution.
REALESRGAN_FILE = "RealESRGAN_x4plus.pth"

#: The shape model's config, next to its weights.
SHAPE_CONFIG_FILE = "config.yaml"
#: Weights file of a diffusers component folder (``unet/``, ``vae/``), in order of preference.
DIFFUSERS_WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
#: Config and weights files of a transformers model folder (``dinov2-giant/``), weights in order of preference.
TRANSFORMERS_CONFIG_FILE = "config.json"
TRANSFORMERS_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
