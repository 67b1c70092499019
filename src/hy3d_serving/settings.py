"""Every setting of the service in one table: environment variables and ``config.pbtxt`` parameters.

A stage setting can come from the environment (``HY3D_WEIGHTS_DIR``) or from a ``parameters`` entry of
the model's ``config.pbtxt`` (``weights_dir``); the environment wins, an empty value means "unset".
Server settings (ports, bind address) are read by the launcher only. The README's settings table is
checked against :data:`SETTINGS` by a test.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class SettingsError(ValueError):
    """A setting holds a value that is not allowed; the message names the setting and what is allowed."""


@dataclass(frozen=True)
class Setting:
    """One knob: where it is read from, its default (as documented) and what it does."""

    env: str
    parameter: str | None  # config.pbtxt parameter key, None for server-only settings
    default: str
    description: str


# Server (read by ``scripts/serve`` / ``hy3d_tooling.launcher``).
HTTP_PORT = Setting("HY3D_HTTP_PORT", None, "8000", "HTTP/REST port of tritonserver.")
GRPC_PORT = Setting("HY3D_GRPC_PORT", None, "8001", "gRPC port of tritonserver.")
METRICS_PORT = Setting("HY3D_METRICS_PORT", None, "8002", "Prometheus metrics port of tritonserver.")
BIND_ADDRESS = Setting("HY3D_BIND_ADDRESS", None, "0.0.0.0",
                       "Address the HTTP, gRPC and metrics endpoints bind to (tests use 127.0.0.1).")
MODEL_REPOSITORY = Setting("HY3D_MODEL_REPOSITORY", None, "model_repository/ of this checkout",
                           "Triton model repository to serve.")
READY_TIMEOUT_S = Setting("HY3D_READY_TIMEOUT_S", None, "900",
                          "Seconds `scripts/serve` waits for every model to be ready before giving up.")
LOG_VERBOSE = Setting("HY3D_LOG_VERBOSE", None, "0", "tritonserver `--log-verbose` level.")
MODEL_CONFIG = Setting("HY3D_MODEL_CONFIG", None, "unset (each model's config.pbtxt)",
                       "Triton `--model-config-name`: `gpu` serves `configs/gpu.pbtxt` of each model that has "
                       "one (KIND_GPU instances, warm-up); models without that file keep `config.pbtxt`.")
DRAIN_TIMEOUT_S = Setting("HY3D_DRAIN_TIMEOUT_S", None, "600",
                          "On SIGTERM: seconds in-flight requests may take to finish while readiness is false "
                          "and new requests are refused; then the server exits (also tritonserver's "
                          "`--exit-timeout-secs`). Cover the longest GPU request.")
MAX_QUEUE_SIZE = Setting("HY3D_MAX_QUEUE_SIZE", None, "8",
                         "Most requests waiting per stage (Triton queue policy); one more is refused at once "
                         "with UNAVAILABLE / HTTP 503 naming the limit. 0 = unbounded.")
TRITON_HOME = Setting("HY3D_TRITON_HOME", None, "unset (the nvidia-pytriton wheel's build)",
                      "A Triton install to run instead, laid out as NVIDIA's container has it (`bin/tritonserver`, "
                      "`backends/python` with its stub, `caches/`); the image sets `/opt/tritonserver`.")
CACHE_BYTES = Setting("HY3D_CACHE_BYTES", None, "268435456",
                      "Size in bytes of Triton's response cache (`--cache-config local,size=...`): a repeated "
                      "request (same image and parameters) is answered from it byte for byte. 0 disables it.")

# Stages (read by each Triton model in ``initialize``).
REQUIRE_WEIGHTS = Setting("HY3D_REQUIRE_WEIGHTS", "require_weights", "0",
                          "`1`/`true`: no silent fallback. A stage whose real engine (weights, rembg model "
                          "file) cannot load fails its model load naming the missing path.")
VOLUME_DECODER = Setting("HY3D_VOLUME_DECODER", "volume_decoder", "flashvdm",
                         "Neural shape stage: `dense` (the parity reference), `hierarchical` or `flashvdm` "
                         "volume decoding; see docs/shape.md for what each gives up.")
COMPILE = Setting("HY3D_COMPILE", "compile", "0",
                  "Neural shape stage: `1` compiles the DiT with `torch.compile` (the first request "
                  "compiles it: slower start, faster steps on CUDA).")
WEIGHTS_DIR = Setting("HY3D_WEIGHTS_DIR", "weights_dir", "unset (built-in CPU engines)",
                      "Folder with the official Hunyuan3D-2.1 layout; set: neural engines, unset: built-in ones.")
DEVICE = Setting("HY3D_DEVICE", "device", "auto",
                 "`auto` (the instance's GPU, else `cuda` when available, else `cpu`), `cpu`, `cuda`, `cuda:N`.")
DTYPE = Setting("HY3D_DTYPE", "dtype", "auto",
                "`auto` (float16 on CUDA, float32 on CPU), `float32`, `float16`, `bfloat16`.")
PAINT_VIEW_SIZE = Setting("HY3D_PAINT_VIEW_SIZE", "paint_view_size", "engine default (512)",
                          "Neural texture stage: diffusion resolution of each view, in pixels.")
PAINT_RENDER_SIZE = Setting("HY3D_PAINT_RENDER_SIZE", "paint_render_size", "engine default (2048)",
                            "Neural texture stage: size of the condition renders and bake images, in pixels.")
PAINT_TEXTURE_SIZE = Setting("HY3D_PAINT_TEXTURE_SIZE", "paint_texture_size", "engine default (4096)",
                             "Neural texture stage: side of the baked UV textures, in pixels.")
PAINT_MAX_NUM_VIEW = Setting("HY3D_PAINT_MAX_NUM_VIEW", "paint_max_num_view", "engine default (6)",
                             "Neural texture stage: most views generated and baked.")

# Read by the engine libraries themselves (listed here so that the README names every setting).
REMBG_MODEL = Setting("HY3D_REMBG_MODEL", None, "unset ($U2NET_HOME/u2net.onnx when present)",
                      "u2net ONNX file for rembg background removal through onnxruntime (read by hy3dshape; "
                      "the image bakes one in); without one, the classical remover for plain backgrounds is "
                      "used, or, with HY3D_REQUIRE_WEIGHTS, preprocess fails its load naming the path.")

MR_LAYOUT = Setting("HY3D_MR_LAYOUT", None, "reference",
                    "How the texture model's metallic-roughness views are read (read by hy3dpaint): `reference` "
                    "(as upstream: R = metallic, G = roughness) or `gltf` (B = metallic, G = roughness); "
                    "see docs/paint.md.")

SERVER_SETTINGS: tuple[Setting, ...] = (
    HTTP_PORT, GRPC_PORT, METRICS_PORT, BIND_ADDRESS, MODEL_REPOSITORY, READY_TIMEOUT_S, LOG_VERBOSE,
    MODEL_CONFIG, DRAIN_TIMEOUT_S, MAX_QUEUE_SIZE, CACHE_BYTES, TRITON_HOME,
)
PAINT_SIZE_SETTINGS: tuple[Setting, ...] = (
    PAINT_VIEW_SIZE, PAINT_RENDER_SIZE, PAINT_TEXTURE_SIZE, PAINT_MAX_NUM_VIEW,
)
STAGE_SETTINGS: tuple[Setting, ...] = (
    WEIGHTS_DIR, DEVICE, DTYPE, REQUIRE_WEIGHTS, VOLUME_DECODER, COMPILE, *PAINT_SIZE_SETTINGS,
)
ENGINE_SETTINGS: tuple[Setting, ...] = (REMBG_MODEL, MR_LAYOUT)
SETTINGS: tuple[Setting, ...] = SERVER_SETTINGS + STAGE_SETTINGS + ENGINE_SETTINGS

#: Allowed range of each paint size override (inclusive); the engine may narrow it further.
PAINT_SIZE_RANGES: dict[str, tuple[int, int]] = {
    PAINT_VIEW_SIZE.parameter: (32, 2048),
    PAINT_RENDER_SIZE.parameter: (32, 8192),
    PAINT_TEXTURE_SIZE.parameter: (32, 8192),
    PAINT_MAX_NUM_VIEW.parameter: (1, 12),
}
#: Device names accepted by HY3D_DEVICE besides ``cuda:N``.
DEVICES = ("auto", "cpu", "cuda")
#: Dtype names accepted by HY3D_DTYPE.
DTYPES = ("auto", "float32", "float16", "bfloat16")
#: Volume decoders accepted by HY3D_VOLUME_DECODER (hy3dshape.volume_decoders.VOLUME_DECODERS).
VOLUME_DECODER_NAMES = ("dense", "hierarchical", "flashvdm")
#: Largest TCP port number.
MAX_PORT = 65535


def lookup(setting: Setting, parameters: Mapping[str, str] | None = None,
           environ: Mapping[str, str] | None = None) -> str | None:
    """Value of ``setting``: the environment first, then the ``config.pbtxt`` parameter; None when unset."""
    environ = os.environ if environ is None else environ
    value = environ.get(setting.env, "").strip()
    if not value and setting.parameter and parameters:
        value = str(parameters.get(setting.parameter, "")).strip()
    return value or None


def parse_int(setting: Setting, raw: str, minimum: int, maximum: int) -> int:
    """``raw`` as an integer in ``[minimum, maximum]``; raises :class:`SettingsError` naming ``setting``."""
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{setting.env}={raw!r}: expected an integer in [{minimum}, {maximum}]") from None
    if not minimum <= value <= maximum:
        raise SettingsError(f"{setting.env}={raw!r}: out of range; expected an integer in [{minimum}, {maximum}]")
    return value


#: Spellings accepted for a yes/no setting (compared case-insensitively).
TRUE_VALUES = ("1", "true", "yes", "on")
FALSE_VALUES = ("0", "false", "no", "off")


def parse_bool(setting: Setting, raw: str | None) -> bool:
    """``raw`` as a yes/no flag (unset: the setting's default); raises :class:`SettingsError` naming ``setting``."""
    value = (raw if raw is not None else setting.default).strip().lower()
    if value in TRUE_VALUES:
        return True
    if value in FALSE_VALUES:
        return False
    raise SettingsError(f"{setting.env}={raw!r}: expected one of {', '.join(TRUE_VALUES + FALSE_VALUES)}")


def model_parameters(model_config: Mapping[str, Any]) -> dict[str, str]:
    """The ``parameters`` of a Triton model config (as JSON-decoded by the Python backend), as strings.

    Raises :class:`SettingsError` for a parameter this service does not know, naming the known ones.
    """
    raw = model_config.get("parameters") or {}
    known = {s.parameter for s in STAGE_SETTINGS if s.parameter}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise SettingsError(
            f"unknown parameter {unknown[0]!r} in config.pbtxt of model {model_config.get('name', '?')!r}; "
            f"known: {', '.join(sorted(known))}"
        )
    return {key: str(entry.get("string_value", "")) if isinstance(entry, Mapping) else str(entry)
            for key, entry in raw.items()}
