"""Turn what a caller hands us (path, bytes, base64, PIL image, array) into the ``IMAGE`` tensor.

The result is UINT8 ``[H, W, 3]`` or ``[H, W, 4]`` (alpha kept: it is the object mask). Limits from
the contract are enforced before any pixel is decoded: the encoded size first, then the size the
image header declares, so a decompression bomb costs nothing but a header read.

Mode conversions: ``L``/``1``/``CMYK``/``YCbCr``/``LAB``/``HSV`` -> RGB; ``LA``/``PA``/``La``/``RGBa``
-> RGBA; ``P`` -> RGBA when the palette has transparency, else RGB; 16/32-bit grayscale (``I;16*``,
``I``) is scaled from [0, 65535] to [0, 255] (not clipped); float grayscale (``F``) is read as [0, 1].
The EXIF orientation is applied, so the array is the image as a viewer shows it.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .contract import (
    IMAGE_KEY,
    MAX_IMAGE_BYTES,
    MAX_IMAGE_PIXELS,
    ContractError,
    check_image_size,
    validate_image,
)

#: Image formats the decoder opens. Others (EPS, which runs Ghostscript, and rarer formats with a
#: history of parser bugs) are refused. Multi-picture JPEGs (MPO) from cameras open as JPEG.
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
#: Longest base64 text of an image within ``MAX_IMAGE_BYTES`` (padding included, no whitespace).
MAX_BASE64_CHARS = 4 * math.ceil(MAX_IMAGE_BYTES / 3)
#: Extra characters tolerated before whitespace is stripped (line breaks of wrapped base64, a data-URL header).
BASE64_SLACK_CHARS = MAX_BASE64_CHARS // 16
#: A string longer than this is never taken for a file path.
MAX_PATH_CHARS = 4096
#: Full range of 16-bit samples, mapped onto [0, 255].
UINT16_TO_UINT8 = 65535 / 255

_RGB_MODES = ("RGB", "L", "1", "CMYK", "YCbCr", "LAB", "HSV")
_RGBA_MODES = ("RGBA", "LA", "La", "PA", "RGBa")
_WIDE_GRAY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def load_image(image: Any, field: str = IMAGE_KEY) -> np.ndarray:
    """The ``IMAGE`` tensor for ``image``: a path, encoded bytes, a base64 string (data URL allowed),
    a PIL image or a UINT8 ``[H, W, 3|4]`` array.

    A ``str`` naming an existing file is read as a path, any other ``str`` as base64.
    Raises ``ContractError`` naming ``field`` for anything that is not an acceptable image.
    """
    if isinstance(image, np.ndarray):
        return validate_image(image, field)
    if isinstance(image, Image.Image):
        return _pil_to_array(image, field)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode_image_bytes(bytes(image), field)
    if isinstance(image, Path):
        return read_image_file(image, field)
    if isinstance(image, str):
        if len(image) <= MAX_PATH_CHARS and not image.startswith("data:") and os.path.isfile(image):
            return read_image_file(Path(image), field)
        try:
            data = base64_to_bytes(image, field)
        except ContractError:
            if len(image) <= MAX_PATH_CHARS:
                shown = image if len(image) <= 80 else image[:77] + "..."
                raise ContractError(field, f"{shown!r} is neither an existing file nor base64 image data") from None
            raise
        return decode_image_bytes(data, field)
    raise ContractError(
        field, f"expected a path, bytes, a base64 string, a PIL image or a numpy array, got {type(image).__name__}"
    )


def read_image_file(path: Path, field: str = IMAGE_KEY) -> np.ndarray:
    """Decode the image file at ``path`` (its size is checked before it is read)."""
    try:
        size = path.stat().st_size
        if size > MAX_IMAGE_BYTES:
            raise ContractError(field, f"{path} is {size} bytes; at most {MAX_IMAGE_BYTES} bytes allowed")
        with path.open("rb") as stream:
            data = stream.read(MAX_IMAGE_BYTES + 1)
    except OSError as error:
        raise ContractError(field, f"cannot read {path}: {error.strerror or error}") from None
    return decode_image_bytes(data, field)


def decode_base64_image(text: Any, field: str = IMAGE_KEY) -> np.ndarray:
    """Decode base64 image data (plain, wrapped or as a ``data:image/...;base64,`` URL).

    The length is checked before decoding. Raises ``ContractError`` naming ``field``.
    """
    return decode_image_bytes(base64_to_bytes(text, field), field)


def base64_to_bytes(text: Any, field: str = IMAGE_KEY) -> bytes:
    """The bytes encoded by ``text`` (whitespace and missing padding tolerated, data URL allowed).

    Refuses text longer than an image of ``MAX_IMAGE_BYTES`` before decoding it.
    """
    if not isinstance(text, str):
        raise ContractError(field, f"expected a base64 string, got {type(text).__name__}")
    if len(text) > MAX_BASE64_CHARS + BASE64_SLACK_CHARS:
        raise ContractError(field, _too_large_message(len(text) * 3 // 4))
    if text.startswith("data:"):
        header, comma, text = text.partition(",")
        if not comma or not header.endswith(";base64"):
            raise ContractError(field, "a data URL must have the form data:image/<type>;base64,<data>")
    compact = "".join(text.split())
    if not compact:
        raise ContractError(field, "empty; expected base64 image data")
    if len(compact) > MAX_BASE64_CHARS:
        raise ContractError(field, _too_large_message(len(compact) * 3 // 4))
    compact += "=" * (-len(compact) % 4)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise ContractError(field, "not valid base64 (expected the standard alphabet A-Z a-z 0-9 + / with = padding)") from None


def decode_image_bytes(data: bytes, field: str = IMAGE_KEY) -> np.ndarray:
    """Decode an encoded image (one of :data:`ACCEPTED_FORMATS`) into the ``IMAGE`` tensor.

    Checks the encoded size, then the header's width and height, and only then decodes pixels.
    Raises ``ContractError`` naming ``field``; never lets PIL's decompression-bomb error escape.
    """
    if len(data) > MAX_IMAGE_BYTES:
        raise ContractError(field, _too_large_message(len(data)))
    if not data:
        raise ContractError(field, "empty; expected an encoded image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ContractError(field, _bomb_message()) from None
    except UnidentifiedImageError:
        raise ContractError(field, f"not a decodable image; accepted formats: {', '.join(ACCEPTED_FORMATS)}") from None
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError, struct.error... on bad headers
        raise ContractError(field, f"corrupt image header: {error}") from None
    with opened:
        return _pil_to_array(opened, field)


def _pil_to_array(image: Image.Image, field: str) -> np.ndarray:
    """Check the declared size, decode, apply EXIF orientation and convert the mode."""
    check_image_size(image.width, image.height, field)
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
    except Image.DecompressionBombError:
        raise ContractError(field, _bomb_message()) from None
    except Exception as error:  # truncated data, bad compressed stream, malformed EXIF...
        raise ContractError(field, f"corrupt or truncated image: {error}") from None
    return validate_image(_convert_mode(image, field), field)


def _convert_mode(image: Image.Image, field: str) -> np.ndarray:
    mode = image.mode
    if mode in ("RGB", "RGBA"):
        return np.asarray(image, dtype=np.uint8)
    if mode == "P":
        has_alpha = "transparency" in image.info or (image.palette is not None and image.palette.mode == "RGBA")
        return np.asarray(image.convert("RGBA" if has_alpha else "RGB"), dtype=np.uint8)
    if mode in _RGBA_MODES:
        return np.asarray(image.convert("RGBA"), dtype=np.uint8)
    if mode in _RGB_MODES:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    if mode in _WIDE_GRAY_MODES:
        gray = np.asarray(image).astype(np.float64) / UINT16_TO_UINT8
        return _gray_to_rgb(gray)
    if mode == "F":
        gray = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0) * 255.0
        return _gray_to_rgb(gray)
    raise ContractError(field, f"unsupported image mode {mode!r}; use an RGB, RGBA or grayscale image")


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    """Round and clip a float gray image in [0, 255] and repeat it over three channels."""
    gray8 = np.clip(np.rint(gray), 0, 255).astype(np.uint8)
    return np.repeat(gray8[:, :, None], 3, axis=2)


def _too_large_message(size: int) -> str:
    return f"encoded image is about {size} bytes; at most {MAX_IMAGE_BYTES} bytes allowed"


def _bomb_message() -> str:
    return (
        f"the image header declares more than {MAX_IMAGE_PIXELS} pixels; "
        "refused without decoding (possible decompression bomb)"
    )
