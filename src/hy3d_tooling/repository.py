"""The model repository as ``scripts/serve`` serves it: a generated copy carrying the server settings.

A ``config.pbtxt`` is static, but ``HY3D_MAX_QUEUE_SIZE`` must take effect. The launcher therefore serves
a copy made at start-up in a private temporary folder (removed at exit): every model folder is
recreated there with links to its files (``1/``, warm-up data ...), and each config (``config.pbtxt``
and ``configs/*.pbtxt``) is written with its ``max_queue_size`` set to the setting. Triton loads, and
the supervisor reloads, from that copy, so a reload keeps the same settings.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

#: Name of a model's default configuration and of the folder of its named variants.
CONFIG_NAME = "config.pbtxt"
CONFIG_VARIANTS_DIR = "configs"
#: Prefix of the temporary folder that holds the served copy.
COPY_PREFIX = "hy3d-repository-"
_QUEUE_SIZE = re.compile(r"\bmax_queue_size\s*:\s*\d+")


def with_queue_size(config_text: str, max_queue_size: int) -> str:
    """``config_text`` with every ``max_queue_size: N`` set to ``max_queue_size`` (0 = unbounded)."""
    return _QUEUE_SIZE.sub(f"max_queue_size: {max_queue_size}", config_text)


def _copy_config(source: Path, target: Path, max_queue_size: int) -> None:
    target.write_text(with_queue_size(source.read_text(), max_queue_size))


def write_served_copy(source: Path, target: Path, max_queue_size: int) -> Path:
    """Recreate the repository ``source`` under ``target`` (see the module docstring); returns ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    for model_dir in sorted(p for p in source.iterdir() if (p / CONFIG_NAME).is_file()):
        served = target / model_dir.name
        served.mkdir()
        for entry in sorted(model_dir.iterdir()):
            if entry.name == CONFIG_NAME:
                _copy_config(entry, served / entry.name, max_queue_size)
            elif entry.name == CONFIG_VARIANTS_DIR and entry.is_dir():
                variants = served / CONFIG_VARIANTS_DIR
                variants.mkdir()
                for variant in sorted(entry.iterdir()):
                    if variant.suffix == ".pbtxt":
                        _copy_config(variant, variants / variant.name, max_queue_size)
                    else:
                        (variants / variant.name).symlink_to(variant.resolve())
            else:
                (served / entry.name).symlink_to(entry.resolve())
    return target


class ServedRepository:
    """``with ServedRepository(source, max_queue_size) as path:`` the copy to serve, removed afterwards."""

    def __init__(self, source: Path, max_queue_size: int):
        self.source = source
        self.max_queue_size = max_queue_size
        self.path: Path | None = None

    def __enter__(self) -> Path:
        self.path = Path(tempfile.mkdtemp(prefix=COPY_PREFIX))
        return write_served_copy(self.source, self.path, self.max_queue_size)

    def __exit__(self, *exc_info: object) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
