"""Image decoding: every format we accept becomes upright RGB; everything else is a specific error."""

import io

import numpy as np
import pytest
from conftest import image_bytes
from PIL import Image

from inference.images import ImageError, Limits, load_image


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_accepted_formats_decode_to_rgb(fmt):
    loaded = load_image(image_bytes(fmt, size=(96, 72)))
    assert loaded.image.mode == "RGB"
    assert (loaded.width, loaded.height) == (96, 72) == loaded.image.size
    assert loaded.format == fmt


@pytest.mark.parametrize(
    "data, code, status",
    [
        (b"", "empty_image", 422),
        (b"hello, this is not an image", "unsupported_format", 415),
        (image_bytes("TIFF"), "unsupported_format", 415),  # a TIFF is refused even if named .jpg
        (image_bytes("GIF", mode="L"), "unsupported_format", 415),
        (image_bytes("JPEG", size=(200, 150))[:600], "corrupt_image", 422),  # cut inside the header
        (image_bytes("JPEG", size=(200, 150))[:6000], "corrupt_image", 422),  # cut inside the pixels
        (image_bytes("PNG", size=(200, 150))[:3000], "corrupt_image", 422),
    ],
)
def test_bad_bytes_give_specific_errors(data, code, status):
    with pytest.raises(ImageError) as info:
        load_image(data)
    assert (info.value.code, info.value.status) == (code, status)
    assert info.value.message  # says what is wrong


def test_upload_byte_limit():
    data = image_bytes("PNG", size=(64, 64))
    with pytest.raises(ImageError) as info:
        load_image(data, limits=Limits(max_bytes=len(data) - 1))
    assert info.value.status == 413 and f"{len(data) - 1:,}" in info.value.message


def test_pixel_limit_is_checked_from_the_header_before_decoding():
    # 20000 x 20000 of one colour compresses to a few hundred kB but would decode to 1.2 GB.
    buffer = io.BytesIO()
    Image.new("L", (20000, 20000)).save(buffer, "PNG")
    with pytest.raises(ImageError) as info:
        load_image(buffer.getvalue(), limits=Limits(max_pixels=10_000_000))
    assert info.value.code == "too_many_pixels" and info.value.status == 413


def test_exif_orientation_is_applied():
    pixels = np.zeros((40, 80, 3), np.uint8)
    pixels[:, :40] = 255  # left half white
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif, quality=95)
    loaded = load_image(buffer.getvalue())
    assert (loaded.width, loaded.height) == (40, 80) == loaded.image.size
    upright = np.asarray(loaded.image).mean(axis=(1, 2))
    assert upright[:40].mean() > 200 and upright[40:].mean() < 50  # white half is now on top


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK"])
def test_colour_modes_become_rgb(mode):
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    assert load_image(image_bytes(fmt, mode=mode)).image.mode == "RGB"


def test_transparency_is_flattened_on_white():
    buffer = io.BytesIO()
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(buffer, "PNG")
    assert np.asarray(load_image(buffer.getvalue()).image).min() == 255


def test_16_bit_grayscale_is_scaled_not_clipped():
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8), 32768, np.uint16)).save(buffer, "PNG")
    value = np.asarray(load_image(buffer.getvalue()).image)[0, 0, 0]
    assert value == 128


def test_jpeg_draft_decodes_large_photos_at_reduced_size():
    loaded = load_image(image_bytes("JPEG", size=(1600, 1200)), draft_to=(320, 240))
    assert (loaded.width, loaded.height) == (1600, 1200)  # the original's size is still reported
    assert loaded.image.size[0] < 1600 and loaded.image.size[0] >= 320
