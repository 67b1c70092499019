"""Image decoding promises: UINT8 [H, W, 3|4], sensible mode conversions, limits checked before decoding."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from hy3d_client import images
from hy3d_client.contract import MAX_IMAGE_BYTES, MAX_IMAGE_SIDE, MIN_IMAGE_SIDE, ContractError
from hy3d_client.images import decode_base64_image, decode_image_bytes, load_image
from PIL import Image

from .samples import encode_png, png_with_header


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def test_rgb_png_decodes_to_uint8_hw3_with_its_pixels():
    pixels = np.random.default_rng(0).integers(0, 256, (12, 20, 3), dtype=np.uint8)
    array = decode_image_bytes(encode_png(Image.fromarray(pixels)))
    assert array.dtype == np.uint8 and array.shape == (12, 20, 3)
    np.testing.assert_array_equal(array, pixels)


def test_rgba_keeps_its_alpha_channel():
    pixels = np.random.default_rng(1).integers(0, 256, (16, 16, 4), dtype=np.uint8)
    array = decode_image_bytes(encode_png(Image.fromarray(pixels, "RGBA")))
    assert array.shape == (16, 16, 4)
    np.testing.assert_array_equal(array, pixels)


def test_grayscale_becomes_rgb():
    gray = np.arange(16 * 16, dtype=np.uint8).reshape(16, 16)
    array = decode_image_bytes(encode_png(Image.fromarray(gray, "L")))
    assert array.shape == (16, 16, 3)
    for channel in range(3):
        np.testing.assert_array_equal(array[:, :, channel], gray)


def test_grayscale_with_alpha_becomes_rgba():
    image = Image.new("LA", (10, 10), (90, 30))
    array = decode_image_bytes(encode_png(image))
    assert array.shape == (10, 10, 4)
    assert tuple(array[0, 0]) == (90, 90, 90, 30)


def test_palette_with_transparency_becomes_rgba_and_without_becomes_rgb():
    palette_image = Image.new("P", (10, 10), 1)
    palette_image.putpalette([0, 0, 0, 250, 10, 10] + [0] * 762)
    opaque = decode_image_bytes(encode_png(palette_image))
    transparent = decode_image_bytes(encode(palette_image, "PNG", transparency=1))
    assert opaque.shape == (10, 10, 3) and tuple(opaque[0, 0]) == (250, 10, 10)
    assert transparent.shape == (10, 10, 4) and transparent[0, 0, 3] == 0


def test_cmyk_jpeg_becomes_rgb():
    red_in_cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))
    array = decode_image_bytes(encode(red_in_cmyk, "JPEG", quality=95))
    assert array.shape == (16, 16, 3)
    red, green, blue = (int(v) for v in array[8, 8])
    assert red > 230 and green < 30 and blue < 30


def test_16_bit_grayscale_is_scaled_to_8_bits_not_clipped():
    samples = np.array([[0, 257 * 64, 257 * 128, 65535]] * 8, dtype=np.uint16)
    samples = np.repeat(samples, 2, axis=1)  # 8 x 8
    array = decode_image_bytes(encode_png(Image.fromarray(samples)))
    assert array.shape == (8, 8, 3)
    np.testing.assert_array_equal(array[0, ::2, 0], [0, 64, 128, 255])


def test_exif_orientation_is_applied():
    pixels = np.zeros((10, 20, 3), dtype=np.uint8)
    pixels[:, :10] = (255, 0, 0)  # left half red, right half blue
    pixels[:, 10:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    array = decode_image_bytes(encode(Image.fromarray(pixels), "PNG", exif=exif))
    assert array.shape == (20, 10, 3)  # displayed upright: tall, the left half now on top
    assert tuple(array[2, 5]) == (255, 0, 0) and tuple(array[17, 5]) == (0, 0, 255)


@pytest.mark.parametrize("wrap", ["plain", "data_url", "line_breaks", "no_padding"])
def test_base64_forms_decode_to_the_same_image(wrap):
    data = encode_png(Image.new("RGB", (9, 9), (1, 2, 3)))
    text = base64.b64encode(data).decode()
    if wrap == "data_url":
        text = "data:image/png;base64," + text
    elif wrap == "line_breaks":
        text = "\n".join(text[i:i + 76] for i in range(0, len(text), 76)) + "\n"
    elif wrap == "no_padding":
        text = text.rstrip("=")
    array = decode_base64_image(text)
    assert array.shape == (9, 9, 3) and tuple(array[4, 4]) == (1, 2, 3)


@pytest.mark.parametrize("text", ["not base64 at all!", "@@@@", "data:image/png,abc"])
def test_text_that_is_not_base64_is_refused_naming_the_image(text):
    with pytest.raises(ContractError) as caught:
        decode_base64_image(text)
    assert caught.value.field == "image"
    assert "base64" in str(caught.value)


def test_base64_of_something_else_than_an_image_is_refused():
    with pytest.raises(ContractError, match="image: not a decodable image; accepted formats: PNG"):
        decode_base64_image(base64.b64encode(b"this is a text file, not a picture").decode())


def test_formats_outside_the_accepted_list_are_refused():
    icon = encode(Image.new("RGB", (32, 32), (9, 9, 9)), "ICO")
    with pytest.raises(ContractError, match="not a decodable image; accepted formats"):
        decode_image_bytes(icon)


def test_encoded_image_over_the_byte_limit_is_refused_before_decoding(monkeypatch):
    monkeypatch.setattr(images.Image, "open", pytest.fail)  # any decoding attempt fails the test
    with pytest.raises(ContractError, match=f"at most {MAX_IMAGE_BYTES} bytes"):
        decode_image_bytes(b"\0" * (MAX_IMAGE_BYTES + 1))
    with pytest.raises(ContractError, match=f"at most {MAX_IMAGE_BYTES} bytes"):
        decode_base64_image("A" * (images.MAX_BASE64_CHARS + 4))


def test_image_larger_than_the_side_limit_is_refused_from_its_header():
    # The pixel data is garbage: decoding it would fail differently, so the header alone decided.
    with pytest.raises(ContractError, match=f"each side must be at most {MAX_IMAGE_SIDE} px"):
        decode_image_bytes(png_with_header(MAX_IMAGE_SIDE + 1, 100))


def test_decompression_bomb_is_refused_with_a_contract_error():
    with pytest.raises(ContractError, match="decompression bomb") as caught:
        decode_image_bytes(png_with_header(100_000, 100_000))
    assert caught.value.field == "image"
    assert not isinstance(caught.value, Image.DecompressionBombError)


def test_image_smaller_than_the_side_limit_is_refused():
    with pytest.raises(ContractError, match=f"at least {MIN_IMAGE_SIDE} px"):
        decode_image_bytes(encode_png(Image.new("RGB", (MIN_IMAGE_SIDE - 1, 30))))


def test_truncated_image_is_refused_as_corrupt():
    data = encode_png(Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)))
    with pytest.raises(ContractError, match="corrupt or truncated image"):
        decode_image_bytes(data[: len(data) // 2])


def test_every_input_form_gives_the_same_array(tmp_path: Path):
    image = Image.new("RGBA", (12, 10), (5, 6, 7, 200))
    data = encode_png(image)
    path = tmp_path / "object.png"
    path.write_bytes(data)
    expected = np.asarray(image)
    for form in (path, str(path), data, bytearray(data), base64.b64encode(data).decode(), image, expected):
        np.testing.assert_array_equal(load_image(form), expected)


def test_a_missing_file_is_named_in_the_error(tmp_path: Path):
    with pytest.raises(ContractError, match="neither an existing file nor base64"):
        load_image(str(tmp_path / "missing.png"))
    with pytest.raises(ContractError, match="cannot read"):
        load_image(tmp_path / "missing.png")


def test_a_file_over_the_byte_limit_is_refused_from_its_size(tmp_path: Path, monkeypatch):
    path = tmp_path / "huge.png"
    with path.open("wb") as stream:
        stream.truncate(MAX_IMAGE_BYTES + 1)  # sparse: nothing is written
    monkeypatch.setattr(images.Image, "open", pytest.fail)
    with pytest.raises(ContractError, match=f"at most {MAX_IMAGE_BYTES} bytes"):
        load_image(path)


def test_unsupported_python_types_are_refused():
    with pytest.raises(ContractError, match="expected a path, bytes, a base64 string"):
        load_image(12345)
