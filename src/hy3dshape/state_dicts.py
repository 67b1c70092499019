"""Strict state-dict loading shared by every network of the package.

A checkpoint entry must hold exactly the tensors a module declares (optionally plus keys under
prefixes the caller says it ignores, e.g. the VAE encoder), with the same shapes and a floating
dtype. Anything else fails with an error that names the file, the entry and the first offending key.
Tensors are cast to the requested dtype and moved to the requested device once, then *assigned*
into the module, so a module built on the ``meta`` device never allocates its own random weights.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, MutableMapping

import torch
from torch import nn

logger = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A weights file whose layout, keys, shapes or dtypes do not match the model."""


def _shape(tensor: torch.Tensor) -> list[int]:
    return [int(size) for size in tensor.shape]


def check_state_dict(
    module: nn.Module,
    state_dict: MutableMapping[str, torch.Tensor],
    *,
    source: str,
    ignore_prefixes: Iterable[str] = (),
) -> None:
    """Raise ``CheckpointError`` unless ``state_dict`` matches ``module``'s keys and shapes exactly.

    ``source`` (e.g. ``"model.fp16.ckpt [vae]"``) is put in front of every message. Keys starting with
    one of ``ignore_prefixes`` may be present or absent.
    """
    ignored = tuple(ignore_prefixes)
    expected = module.state_dict(keep_vars=True)
    for key, value in state_dict.items():
        if ignored and key.startswith(ignored):
            continue
        if key not in expected:
            raise CheckpointError(
                f"{source}: unexpected key {key!r} ({len(state_dict)} keys in the file, "
                f"{len(expected)} expected by {type(module).__name__})"
            )
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{source}: entry {key!r} is a {type(value).__name__}, not a tensor")
        if not value.is_floating_point():
            raise CheckpointError(f"{source}: tensor {key!r} has dtype {value.dtype}; a floating dtype is expected")
        if _shape(value) != _shape(expected[key]):
            raise CheckpointError(
                f"{source}: shape mismatch for {key!r}: the file has {_shape(value)}, "
                f"the model expects {_shape(expected[key])}"
            )
    for key in expected:
        if key not in state_dict:
            raise CheckpointError(f"{source}: missing key {key!r} (the file has {len(state_dict)} keys)")


def load_state_dict_strict(
    module: nn.Module,
    state_dict: MutableMapping[str, torch.Tensor],
    *,
    source: str,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    ignore_prefixes: Iterable[str] = (),
) -> nn.Module:
    """Check ``state_dict`` strictly (see ``check_state_dict``), then assign it into ``module``.

    Each tensor is cast to ``dtype`` and moved to ``device``; entries are popped from ``state_dict``
    as they are converted, and the dict is left empty, so the file's copy can be freed early. Returns ``module`` in eval mode with
    gradients disabled. Raises ``CheckpointError``.
    """
    check_state_dict(module, state_dict, source=source, ignore_prefixes=ignore_prefixes)
    converted = {}
    for key in list(module.state_dict(keep_vars=True)):
        converted[key] = state_dict.pop(key).to(device=device, dtype=dtype).contiguous()
    skipped = len(state_dict)
    state_dict.clear()
    module.load_state_dict(converted, strict=True, assign=True)
    module.requires_grad_(False)
    module.eval()
    logger.debug("%s: loaded %d tensors as %s on %s (%d ignored)", source, len(converted), dtype, device, skipped)
    return module
