"""Draw ``examples/mug.png``, the bundled example image: a red mug with a handle on a transparent background.

Run ``.venv/bin/python examples/draw_mug.py`` to regenerate it (deterministic).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

SIZE = 256  # pixels, square
BODY = (64, 56, 176, 216)  # left, top, right, bottom of the mug body
HANDLE = (150, 92, 222, 176)  # bounding box of the handle ring
HANDLE_WIDTH = 16
RIM_HEIGHT = 24
RED = (200, 40, 40, 255)
DARK_RED = (140, 24, 24, 255)
INSIDE = (70, 20, 20, 255)
HIGHLIGHT = (240, 140, 140, 255)


def draw_mug() -> Image.Image:
    """The example image, RGBA, alpha = object mask."""
    image = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse(HANDLE, outline=DARK_RED, width=HANDLE_WIDTH)
    left, top, right, bottom = BODY
    draw.rounded_rectangle(BODY, radius=18, fill=RED)
    draw.ellipse((left, bottom - RIM_HEIGHT, right, bottom), fill=RED)
    draw.ellipse((left, top - RIM_HEIGHT // 2, right, top + RIM_HEIGHT // 2), fill=DARK_RED)
    draw.ellipse((left + 8, top - RIM_HEIGHT // 2 + 5, right - 8, top + RIM_HEIGHT // 2 - 3), fill=INSIDE)
    draw.rounded_rectangle((left + 16, top + 28, left + 28, bottom - 36), radius=6, fill=HIGHLIGHT)
    return image


if __name__ == "__main__":
    draw_mug().save(Path(__file__).with_name("mug.png"), optimize=True)
