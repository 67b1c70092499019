"""Turn what a caller hands us (a path, the file's bytes, base64 text) into the ``MESH`` tensor's bytes.

The bytes are checked as far as the client can without a mesh library: size (``MAX_MESH_FILE_BYTES``,
before the file is read or the base64 decoded) and format (GLB, OBJ or PLY, from the content). Whether
the mesh parses, its face and vertex counts and finiteness are checked by the server.
"""

from __future__ import annotations

import base64
import binascii
import math
import os
from pathlib import Path
from typing import Any

from .contract import MAX_MESH_FILE_BYTES, MESH_KEY, ContractError, mesh_file_format

#: Longest base64 text of a mesh file within ``MAX_MESH_FILE_BYTES`` (padding included, no whitespace).
MAX_MESH_BASE64_CHARS = 4 * math.ceil(MAX_MESH_FILE_BYTES / 3)
#: Extra characters tolerated before whitespace is stripped (line breaks of wrapped base64).
MESH_BASE64_SLACK_CHARS = MAX_MESH_BASE64_CHARS // 16
#: A string longer than this is never taken for a file path.
MAX_PATH_CHARS = 4096


def load_mesh_file(mesh: Any, field: str = MESH_KEY) -> bytes:
    """The bytes of a GLB, OBJ or PLY file given as a path (``str`` naming a file, or ``Path``) or as bytes.

    Raises ``ContractError`` naming ``field`` for a missing or unreadable file, an empty or too large
    one, or one that is not a GLB, OBJ or PLY file.
    """
    if isinstance(mesh, (bytes, bytearray, memoryview)):
        data = bytes(mesh)
    elif isinstance(mesh, (str, Path)):
        if isinstance(mesh, str) and (len(mesh) > MAX_PATH_CHARS or not os.path.isfile(mesh)):
            shown = mesh if len(mesh) <= 80 else mesh[:77] + "..."
            raise ContractError(field, f"{shown!r} is not an existing file")
        data = read_mesh_path(Path(mesh), field)
    else:
        raise ContractError(field, f"expected a path or the bytes of a GLB, OBJ or PLY file, got {type(mesh).__name__}")
    mesh_file_format(data, field)
    return data


def read_mesh_path(path: Path, field: str = MESH_KEY) -> bytes:
    """Read the mesh file at ``path`` (its size is checked before it is read)."""
    try:
        size = path.stat().st_size
        if size > MAX_MESH_FILE_BYTES:
            raise ContractError(field, f"{path} is {size} bytes; at most {MAX_MESH_FILE_BYTES} bytes allowed")
        with path.open("rb") as stream:
            return stream.read(MAX_MESH_FILE_BYTES + 1)
    except OSError as error:
        raise ContractError(field, f"cannot read {path}: {error.strerror or error}") from None


def decode_base64_mesh(text: Any, field: str = MESH_KEY) -> bytes:
    """The mesh file encoded by base64 ``text`` (whitespace and missing padding tolerated).

    The length is checked before decoding, the format after. Raises ``ContractError`` naming ``field``.
    """
    if not isinstance(text, str):
        raise ContractError(field, f"expected a base64 string, got {type(text).__name__}")
    if len(text) > MAX_MESH_BASE64_CHARS + MESH_BASE64_SLACK_CHARS:
        raise ContractError(field, _too_large(len(text) * 3 // 4))
    compact = "".join(text.split())
    if not compact:
        raise ContractError(field, "empty; expected a base64 GLB, OBJ or PLY file")
    if len(compact) > MAX_MESH_BASE64_CHARS:
        raise ContractError(field, _too_large(len(compact) * 3 // 4))
    compact += "=" * (-len(compact) % 4)
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise ContractError(field, "not valid base64 (expected the standard alphabet A-Z a-z 0-9 + / with = padding)") from None
    mesh_file_format(data, field)
    return data


def _too_large(size: int) -> str:
    return f"mesh file is about {size} bytes; at most {MAX_MESH_FILE_BYTES} bytes allowed"
