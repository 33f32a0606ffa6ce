"""Image decoding: every format we accept becomes upright RGB; everything else is a specific error."""

import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from inference import images
from inference.images import ImageError, Limits, heif_available, load_image, sniff_format

from conftest import image_bytes


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
        (image_bytes("BMP"), "unsupported_format", 415),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + bytes(64), "unsupported_format", 415),  # not HEIF
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n", "unsupported_format", 415),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 96 72\n", "unsupported_format", 415),
        (b"\xc5\xd0\xd3\xc6" + bytes(28), "unsupported_format", 415),  # binary (DOS) EPS header
        (b"8BPS\x00\x01" + bytes(6) + b"\x00\x03\x00\x00\x00\x48\x00\x00\x00\x60\x00\x08\x00\x03",  # PSD
         "unsupported_format", 415),
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


# --------------------------------------------------------------------------- photos as phones make them


def encode(image: Image.Image, fmt: str, **save) -> bytes:
    if fmt == "HEIF":
        assert heif_available(), "pillow-heif is needed to write HEIC test files"
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


def two_frames(size=(64, 48)) -> tuple[Image.Image, Image.Image]:
    """A red and a blue frame: which one was decoded shows in any pixel."""
    return Image.new("RGB", size, (200, 30, 30)), Image.new("RGB", size, (30, 30, 200))


def is_red(image: Image.Image) -> bool:
    red, green, blue = np.asarray(image, np.float32).reshape(-1, 3).mean(axis=0)
    return red > 150 and blue < 80


def left_half_white(size=(80, 40)) -> Image.Image:
    pixels = np.zeros((size[1], size[0], 3), np.uint8)
    pixels[:, : size[0] // 2] = 255
    return Image.fromarray(pixels)


def assert_white_on_top(loaded) -> None:
    rows = np.asarray(loaded.image).mean(axis=(1, 2))
    half = len(rows) // 2
    assert rows[:half].mean() > 200 and rows[half:].mean() < 50


def test_heic_decodes_to_rgb():
    data = image_bytes("PNG", size=(96, 72))  # random texture, then re-encoded as HEIC
    loaded = load_image(encode(Image.open(io.BytesIO(data)), "HEIF", quality=90))
    assert (loaded.format, loaded.image.mode, loaded.image.size, loaded.width, loaded.height) == (
        "HEIF", "RGB", (96, 72), 96, 72)


def test_heic_rotation_is_applied_exactly_once():
    # iPhones store the sensor's pixels plus a rotation (an irot box) and the same rotation as an EXIF tag.
    # pillow-heif writes both when given EXIF orientation 6 as bytes.
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = encode(left_half_white(), "HEIF", exif=exif.tobytes(), quality=90)
    assert b"irot" in data  # the rotation is in the container, where libheif applies it
    loaded = load_image(data)
    assert (loaded.width, loaded.height) == (40, 80) == loaded.image.size  # turned once, not twice or never
    assert_white_on_top(loaded)


def test_damaged_heic_is_corrupt_not_unsupported():
    data = encode(Image.open(io.BytesIO(image_bytes("PNG", size=(160, 120)))), "HEIF")
    stream = data.find(b"mdat") + 8  # the HEVC-coded pixels
    damaged = [data[: len(data) // 2], data[: len(data) - 10], data[:stream] + bytes(64) + data[stream + 64 :]]
    for bad in damaged:  # the first two fail as the container is read, the last one while decoding
        with pytest.raises(ImageError) as info:
            load_image(bad)
        assert (info.value.code, info.value.status) == ("corrupt_image", 422)
        assert "HEIF" in info.value.message


def test_heic_pixel_limit_is_checked_from_the_header_before_decoding(monkeypatch):
    from pillow_heif import HeifImageFile

    data = encode(Image.new("RGB", (640, 480), (90, 90, 90)), "HEIF")

    def no_decoding(self):
        raise AssertionError("the HEIC pixels were decoded before the pixel limit was checked")

    monkeypatch.setattr(HeifImageFile, "load", no_decoding)
    with pytest.raises(ImageError) as info:
        load_image(data, limits=Limits(max_pixels=640 * 480 - 1))
    assert (info.value.code, info.value.status) == ("too_many_pixels", 413)


def test_heic_without_pillow_heif_says_what_is_missing(monkeypatch):
    data = encode(Image.new("RGB", (32, 24)), "HEIF")
    monkeypatch.setattr(images, "heif_available", lambda: False)
    with pytest.raises(ImageError) as info:
        load_image(data)
    assert (info.value.code, info.value.status) == ("unsupported_format", 415)
    assert "pillow-heif" in info.value.message
    assert load_image(image_bytes("JPEG")).format == "JPEG"  # everything else still decodes


@pytest.mark.parametrize("brand", [b"heic", b"heix", b"mif1", b"msf1", b"hevc"])
def test_heif_signature_is_sniffed(brand):
    assert sniff_format(b"\x00\x00\x00\x18ftyp" + brand + b"\x00\x00\x00\x00mif1") == "HEIF"


def test_mpo_is_a_jpeg_photo_decoded_with_draft():
    first, second = two_frames((1600, 1200))
    data = encode(first, "MPO", save_all=True, append_images=[second], quality=90)
    assert Image.open(io.BytesIO(data)).format == "MPO"  # what Pillow makes of most phone JPEGs
    loaded = load_image(data, draft_to=(320, 240))
    assert loaded.format == "JPEG" and (loaded.width, loaded.height) == (1600, 1200)
    assert loaded.image.size == (400, 300)  # DCT-scaled at 1/4: the smallest scale >= 320x240
    assert is_red(loaded.image)  # the first frame, not the appended one


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "MPO"])
def test_multi_frame_files_give_their_first_frame(fmt):
    first, second = two_frames()
    data = encode(first, fmt, save_all=True, append_images=[second])
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 2  # really an animation / multi-picture
    assert is_red(load_image(data).image)


def test_twelve_megapixel_jpeg_decodes_at_one_eighth():
    data = encode(Image.linear_gradient("L").resize((4000, 3000)).convert("RGB"), "JPEG", quality=90)
    loaded = load_image(data, draft_to=(320, 240))
    assert (loaded.width, loaded.height) == (4000, 3000)
    assert loaded.image.size == (500, 375)


def test_palette_images_become_rgb_with_transparency_on_white():
    palette_image = Image.new("P", (4, 2))
    palette_image.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)  # index 0 black, index 1 red
    palette_image.putpixel((0, 0), 1)
    opaque = np.asarray(load_image(encode(palette_image, "PNG")).image)
    see_through = np.asarray(load_image(encode(palette_image, "PNG", transparency=0)).image)
    assert tuple(opaque[0, 0]) == tuple(see_through[0, 0]) == (200, 30, 30)
    assert tuple(opaque[0, 1]) == (0, 0, 0) and tuple(see_through[0, 1]) == (255, 255, 255)


def test_gray_with_alpha_is_flattened_on_white():
    pixels = np.array([[[0, 255], [0, 0]]], np.uint8)  # opaque black, transparent black
    loaded = load_image(encode(Image.fromarray(pixels, "LA"), "PNG"))
    assert loaded.image.mode == "RGB" and np.asarray(loaded.image)[0].tolist() == [[0, 0, 0], [255, 255, 255]]


# --------------------------------------------------------------------------- training and serving see the same pixels

# load_image(draft_to=(320, 240)) of the synth photo below, hashed before HEIC/MPO support was added
# (Pillow 13.0.0): training and serving share this decoder, so a 640x480 photo must become the same
# pixels as before. The input's own hash is pinned too: another Pillow or font build renders another photo.
_SYNTH_JPEG_SHA256 = "6eff1241bc53e8d9034f94cecdb1f6cd7b908d0a2ca728f8c51dca71033a8d85"
_SYNTH_DECODED_SHA256 = "8a045596820c169ba56723df27f40d6137689db7923586d6475f0af586a0949d"


def test_small_jpeg_decodes_to_the_same_pixels_as_before():
    from datatools.synth import jpeg_bytes, make_product_design, photograph, render_artwork

    photo = photograph(render_artwork(make_product_design(3, 0), 0.25), np.random.default_rng(11))
    data = jpeg_bytes(photo, 85)
    loaded = load_image(data, draft_to=(320, 240))
    # The reference decode, as load_image did it before: on every Pillow build.
    reference = Image.open(io.BytesIO(data))
    reference.draft("RGB", (320, 240))
    assert loaded.image.tobytes() == reference.convert("RGB").tobytes() and loaded.image.size == (320, 240)
    if hashlib.sha256(data).hexdigest() != _SYNTH_JPEG_SHA256:
        pytest.skip("this Pillow/font build renders another synth photo: the pinned pixel hash does not apply")
    pixels = loaded.image.mode.encode() + repr(loaded.image.size).encode() + loaded.image.tobytes()
    assert hashlib.sha256(pixels).hexdigest() == _SYNTH_DECODED_SHA256


def test_normalise_is_the_formula_for_every_value_of_every_channel():
    from inference.preprocess import PreprocessSpec, normalise

    spec = PreprocessSpec(width=256, height=9, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    ramp = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)  # (1, 256, 3)
    pixels = np.concatenate([ramp, ramp[:, ::-1], np.roll(ramp, 7, axis=1)] * 3)  # (9, 256, 3)
    expected = ((pixels.astype(np.float32) / np.float32(255) - np.float32(spec.mean)) / np.float32(spec.std))
    got = normalise(Image.fromarray(pixels), spec)
    assert got.dtype == np.float32 and got.shape == (3, 9, 256) and got.flags.c_contiguous
    np.testing.assert_allclose(got, expected.transpose(2, 0, 1), rtol=0, atol=1e-6)
