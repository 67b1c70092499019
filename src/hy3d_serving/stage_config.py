"""The resolved configuration of one Triton model instance: weights folder, device, dtype, paint sizes,
and whether a missing real engine fails the load (``require_weights``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import settings as s

_CUDA_INDEXED = re.compile(r"^cuda:\d+$")


def _torch_cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@dataclass(frozen=True)
class StageConfig:
    """What a stage needs to load its engine; built once per model instance in ``initialize``."""

    weights_dir: Path | None
    device: str  # "cpu", "cuda" or "cuda:N"
    dtype: str  # "float32", "float16" or "bfloat16"
    paint_sizes: dict[str, int] = field(default_factory=dict)  # only the overrides that are set
    require_weights: bool = False  # True: no silent fallback to the built-in engines or classical rembg
    volume_decoder: str = s.VOLUME_DECODER.default  # neural shape stage: dense, hierarchical or flashvdm
    compile: bool = False  # neural shape stage: torch.compile the DiT at load

    @classmethod
    def resolve(
        cls,
        parameters: Mapping[str, str] | None = None,
        environ: Mapping[str, str] | None = None,
        *,
        instance_kind: str = "CPU",
        instance_device_id: int = 0,
        cuda_available: Callable[[], bool] = _torch_cuda_available,
    ) -> StageConfig:
        """Resolve the stage settings from the environment and the model's ``config.pbtxt`` parameters.

        ``instance_kind``/``instance_device_id`` come from Triton's ``args``: a ``KIND_GPU`` instance
        runs on its own GPU when the device is ``auto``. Raises :class:`~hy3d_serving.settings.SettingsError`
        naming the setting for a value that is not allowed (also ``cuda`` without a usable GPU).
        """
        weights = s.lookup(s.WEIGHTS_DIR, parameters, environ)
        device = _resolve_device(s.lookup(s.DEVICE, parameters, environ) or "auto",
                                 instance_kind, instance_device_id, cuda_available)
        dtype = _resolve_dtype(s.lookup(s.DTYPE, parameters, environ) or "auto", device)
        paint_sizes: dict[str, int] = {}
        for setting in s.PAINT_SIZE_SETTINGS:
            raw = s.lookup(setting, parameters, environ)
            if raw is not None:
                low, high = s.PAINT_SIZE_RANGES[setting.parameter]
                paint_sizes[setting.parameter] = s.parse_int(setting, raw, low, high)
        require_weights = s.parse_bool(s.REQUIRE_WEIGHTS, s.lookup(s.REQUIRE_WEIGHTS, parameters, environ))
        volume_decoder = s.lookup(s.VOLUME_DECODER, parameters, environ) or s.VOLUME_DECODER.default
        if volume_decoder not in s.VOLUME_DECODER_NAMES:
            raise s.SettingsError(f"{s.VOLUME_DECODER.env}={volume_decoder!r}: expected one of "
                                  f"{', '.join(s.VOLUME_DECODER_NAMES)}")
        compile_dit = s.parse_bool(s.COMPILE, s.lookup(s.COMPILE, parameters, environ))
        return cls(Path(weights).expanduser() if weights else None, device, dtype, paint_sizes,
                   require_weights=require_weights, volume_decoder=volume_decoder, compile=compile_dit)

    def torch_dtype(self) -> Any:
        """The ``torch.dtype`` matching :attr:`dtype`."""
        import torch

        return getattr(torch, self.dtype)


def _resolve_device(value: str, instance_kind: str, instance_device_id: int,
                    cuda_available: Callable[[], bool]) -> str:
    if value not in s.DEVICES and not _CUDA_INDEXED.match(value):
        raise s.SettingsError(f"{s.DEVICE.env}={value!r}: expected one of {', '.join(s.DEVICES)} or cuda:N")
    if value == "auto":
        if instance_kind.upper().endswith("GPU"):
            return f"cuda:{instance_device_id}"
        return "cuda" if cuda_available() else "cpu"
    if value.startswith("cuda") and not cuda_available():
        raise s.SettingsError(f"{s.DEVICE.env}={value!r}: no CUDA device is available to torch; use cpu or auto")
    return value


def _resolve_dtype(value: str, device: str) -> str:
    if value not in s.DTYPES:
        raise s.SettingsError(f"{s.DTYPE.env}={value!r}: expected one of {', '.join(s.DTYPES)}")
    if value == "auto":
        return "float16" if device.startswith("cuda") else "float32"
    return value
