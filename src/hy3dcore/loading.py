"""Strict, offline loading of weights files into modules, and its one error type, ``WeightsError``.

Every network of both stages goes through ``assign_state_dict``: the file must hold exactly the tensors
the module declares (optionally plus keys under prefixes the caller ignores), with the same shapes and
a floating dtype where the module has one. Anything else fails before a weight is assigned, with a
message naming the file, the first missing / unexpected key or the first shape mismatch. A ``KeyMap``
lets a module read a file written with another library version's names (see
``hy3dcore.image_encoders.DINOV2_KEY_MAP``); messages always use the file's names. Nothing here
reaches a hub: every path is a local file. torch is imported on first use, so the serving code can
import ``WeightsError`` without it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hy3dcore.layout import DIFFUSERS_WEIGHT_FILES

if TYPE_CHECKING:
    import torch
    from torch import nn

logger = logging.getLogger(__name__)


class WeightsError(ValueError):
    """A weights folder, weights file or model config that is missing, unreadable or does not match the model."""


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------


def read_json(path: str | Path) -> dict[str, Any]:
    """Read a JSON object from ``path``; raise ``WeightsError`` naming the file if missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise WeightsError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(data, dict):
        raise WeightsError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def find_weights(folder: str | Path, names: tuple[str, ...] = DIFFUSERS_WEIGHT_FILES) -> Path:
    """The first of ``names`` that exists in ``folder``; ``WeightsError`` listing them otherwise."""
    folder = Path(folder)
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise WeightsError(f"{folder}: no weights file; expected one of {', '.join(names)}")


def load_weights(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a ``.safetensors`` file or a torch file (``weights_only=True``, memory-mapped
    when the file allows it). Raises ``WeightsError`` naming the file when it is missing, cannot be
    decoded (corrupt, truncated, pickled code) or does not hold a mapping."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            try:
                state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # legacy (non-zip) torch files cannot be memory-mapped
                state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any decoder error; unpickling errors name the offending global
        raise WeightsError(f"{path}: cannot read weights ({type(error).__name__}: {error})") from error
    if not isinstance(state, Mapping):
        raise WeightsError(f"{path}: expected a mapping of tensors, got {type(state).__name__}")
    return dict(state)


def select_entry(state: Mapping[str, Any], key: str, path: str | Path) -> dict[str, torch.Tensor]:
    """``state[key]`` (e.g. ``params_ema`` of a Real-ESRGAN file), with a clear error if absent."""
    if key not in state or not isinstance(state[key], Mapping):
        found = ", ".join(sorted(map(str, state))[:10]) or "nothing"
        raise WeightsError(f"{path}: expected the state dict under key {key!r}; found {found}")
    return dict(state[key])


# --------------------------------------------------------------------------------------------------
# Names in the file vs names in the module
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyMap:
    """How a module's state-dict names are found in a weights file written with other names.

    ``rules`` are ``(file_part, module_parts)`` pairs. A module key containing ``module_parts[i]`` is read
    from the file key that has ``file_part`` in its place. When a rule has several module parts, the
    file holds one tensor for all of them, their concatenation along dim 0 in the order given; it is
    split into equal chunks on load. Module keys that no rule matches keep their names, so a module
    that already uses the file's names loads through the same map unchanged.
    """

    rules: tuple[tuple[str, tuple[str, ...]], ...]

    def locate(self, module_key: str) -> tuple[str, int, int]:
        """``(file key, chunk index, chunk count)`` of ``module_key``."""
        for file_part, module_parts in self.rules:
            for index, module_part in enumerate(module_parts):
                if module_part in module_key:
                    return module_key.replace(module_part, file_part, 1), index, len(module_parts)
        return module_key, 0, 1


@dataclass(frozen=True)
class _FileEntry:
    shape: tuple[int, ...]
    floating: bool
    module_keys: tuple[str, ...]  # in chunk order


def _file_layout(module: nn.Module, key_map: KeyMap | None) -> dict[str, _FileEntry]:
    """What a weights file for ``module`` must hold: file key -> shape, dtype kind and module keys."""
    parts: dict[str, list[tuple[int, int, str, torch.Tensor]]] = {}
    for key, tensor in module.state_dict(keep_vars=True).items():
        file_key, index, count = key_map.locate(key) if key_map else (key, 0, 1)
        parts.setdefault(file_key, []).append((index, count, key, tensor))
    layout = {}
    for file_key, chunks in parts.items():
        chunks.sort(key=lambda chunk: chunk[0])
        first = chunks[0][3]
        if [chunk[0] for chunk in chunks] != list(range(chunks[0][1])):
            raise ValueError(f"key map: the module parts of {file_key!r} are incomplete: {[c[2] for c in chunks]}")
        shape = (sum(int(chunk[3].shape[0]) for chunk in chunks), *map(int, first.shape[1:])) if len(chunks) > 1 \
            else tuple(int(size) for size in first.shape)
        layout[file_key] = _FileEntry(shape, first.is_floating_point(), tuple(chunk[2] for chunk in chunks))
    return layout


def checkpoint_shapes(module: nn.Module, key_map: KeyMap | None = None) -> dict[str, tuple[int, ...]]:
    """The keys and shapes a weights file for ``module`` holds (file names, in the module's order).

    Works on a module built on the ``meta`` device; used for the full-size key manifests and to write
    test weights in the official layout.
    """
    return {key: entry.shape for key, entry in _file_layout(module, key_map).items()}


# --------------------------------------------------------------------------------------------------
# Checking and assigning
# --------------------------------------------------------------------------------------------------


def _shape(tensor: torch.Tensor) -> list[int]:
    return [int(size) for size in tensor.shape]


def _check(layout: Mapping[str, _FileEntry], state_dict: Mapping[str, Any], source: str,
           ignored: tuple[str, ...]) -> None:
    import torch

    for key, value in state_dict.items():
        if key in layout and not isinstance(value, torch.Tensor):
            raise WeightsError(f"{source}: entry {key!r} is a {type(value).__name__}, not a tensor")
        if key in layout and layout[key].floating and not value.is_floating_point():
            raise WeightsError(f"{source}: tensor {key!r} has dtype {value.dtype}; a floating dtype is expected")
    missing = [key for key in layout if key not in state_dict]
    unexpected = [key for key in state_dict if key not in layout and not (ignored and key.startswith(ignored))]
    mismatched = [key for key in layout if key in state_dict and _shape(state_dict[key]) != list(layout[key].shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s), first {missing[0]!r}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s), first {unexpected[0]!r}")
    if mismatched:
        key = mismatched[0]
        problems.append(f"{len(mismatched)} shape mismatch(es), first {key!r}: file has "
                        f"{_shape(state_dict[key])}, model expects {list(layout[key].shape)}")
    if problems:
        raise WeightsError(f"{source}: weights do not match the model ({len(state_dict)} keys in the file, "
                           f"{len(layout)} expected): " + "; ".join(problems))


def check_state_dict(
    module: nn.Module,
    state_dict: Mapping[str, Any],
    source: str | Path,
    *,
    ignore_prefixes: Iterable[str] = (),
    key_map: KeyMap | None = None,
) -> None:
    """Raise ``WeightsError`` unless ``state_dict`` holds exactly what a file for ``module`` must hold.

    Every entry the module needs must be a tensor of the module's shape (floating where the module's
    is); keys starting with one of ``ignore_prefixes`` may be present or absent. The message starts
    with ``source`` and names the first missing key, the first unexpected key and the first shape
    mismatch (module order; file names), with their counts.
    """
    _check(_file_layout(module, key_map), state_dict, str(source), tuple(ignore_prefixes))


def assign_state_dict(
    module: nn.Module,
    state_dict: MutableMapping[str, Any],
    source: str | Path,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    ignore_prefixes: Iterable[str] = (),
    key_map: KeyMap | None = None,
) -> nn.Module:
    """Check ``state_dict`` strictly (see ``check_state_dict``), then assign its tensors into ``module``.

    ``module`` is best built on the ``meta`` device: no memory or time goes into a random
    initialisation. Floating tensors are cast to ``dtype`` and everything is moved to ``device`` when
    given (kept as in the file otherwise). Entries are popped from ``state_dict`` as they are
    converted and the dict is left empty, so the file's copy can be freed early. Returns ``module``.
    Raises ``WeightsError``.
    """
    source = str(source)
    layout = _file_layout(module, key_map)
    _check(layout, state_dict, source, tuple(ignore_prefixes))
    tensors: dict[str, torch.Tensor] = {}
    for file_key, entry in layout.items():
        value = state_dict.pop(file_key)
        chunks = value.chunk(len(entry.module_keys), dim=0) if len(entry.module_keys) > 1 else (value,)
        for module_key, chunk in zip(entry.module_keys, chunks):
            cast = dtype if dtype is not None and chunk.is_floating_point() else None
            tensors[module_key] = chunk.to(device=device, dtype=cast).contiguous() \
                if device is not None or cast is not None else chunk.contiguous()
    skipped = len(state_dict)
    state_dict.clear()
    module.load_state_dict(tensors, strict=True, assign=True)
    leftover = [name for name, tensor in [*module.named_parameters(), *module.named_buffers()] if tensor.is_meta]
    if leftover:
        raise WeightsError(f"{source}: {len(leftover)} tensor(s) not provided by the file, first {leftover[0]!r}")
    logger.debug("%s: assigned %d tensors (%d ignored)", source, len(tensors), skipped)
    return module
