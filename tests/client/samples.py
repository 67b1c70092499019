"""Small test images, made in memory."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image, ImageDraw


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes of ``image``."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def object_photo(size: int = 96) -> Image.Image:
    """A small RGBA picture of an object (an opaque disc with a stripe) on a transparent background."""
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((size // 6, size // 6, size - size // 6, size - size // 6), fill=(200, 60, 40, 255))
    draw.rectangle((size // 3, size // 6, size // 2, size - size // 6), fill=(40, 90, 200, 255))
    return image


def png_with_header(width: int, height: int, idat: bytes = b"not a zlib stream") -> bytes:
    """A PNG whose header declares ``width`` x ``height`` RGB pixels, followed by ``idat`` as pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
