"""Tests for item_jax.data.image_io: every supported image kind and every reject reason."""

import io

import numpy as np
import pytest
from PIL import Image

from item_jax.data import image_io

RED = (255, 0, 0)
BLUE = (0, 0, 255)


def _stored_pixels(path, image_size=16, max_pixels=1_000_000):
    stored = image_io.load_listing_image(str(path), image_size, max_pixels)
    decoded = Image.open(io.BytesIO(stored.jpeg))
    assert decoded.format == "JPEG" and decoded.mode == "RGB"
    return stored, np.asarray(decoded).astype(int)


def _assert_color(pixel, color, tolerance=40):
    assert np.abs(np.asarray(pixel) - np.asarray(color)).max() <= tolerance, (pixel, color)


def test_exif_rotation_is_applied(tmp_path):
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = RED
    pixels[:, 20:] = BLUE
    exif = Image.Exif()
    exif[0x0112] = 6  # Display needs a 90 degree clockwise turn: the left half goes on top.
    path = tmp_path / "rotated.jpg"
    Image.fromarray(pixels).save(path, exif=exif)

    stored, rgb = _stored_pixels(path, image_size=16)

    assert rgb.shape == (32, 16, 3)
    assert (stored.original_width, stored.original_height) == (20, 40)
    _assert_color(rgb[4, 8], RED)
    _assert_color(rgb[-4, 8], BLUE)


def test_transparent_rgba_is_composited_on_white(tmp_path):
    pixels = np.zeros((16, 16, 4), np.uint8)
    pixels[:, :8] = RED + (255,)
    pixels[:, 8:] = BLUE + (0,)  # Fully transparent: must not come out blue or black.
    path = tmp_path / "rgba.png"
    Image.fromarray(pixels, mode="RGBA").save(path)

    _, rgb = _stored_pixels(path)

    _assert_color(rgb[8, 2], RED)
    _assert_color(rgb[8, 13], (255, 255, 255))


def test_palette_png_with_transparency_is_composited_on_white(tmp_path):
    image = Image.new("P", (16, 16), 0)
    image.putpalette(list(RED) + list(BLUE) + [0] * 762)
    image.paste(1, (8, 0, 16, 16))
    path = tmp_path / "palette.png"
    image.save(path, transparency=1)

    _, rgb = _stored_pixels(path)

    _assert_color(rgb[8, 2], RED)
    _assert_color(rgb[8, 13], (255, 255, 255))


def test_sixteen_bit_png_is_rescaled_not_clipped(tmp_path):
    path = tmp_path / "gray16.png"
    Image.fromarray(np.full((16, 16), 32768, np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I")

    _, rgb = _stored_pixels(path)

    _assert_color(rgb[8, 8], (128, 128, 128), tolerance=3)


def test_grayscale_png_becomes_three_equal_channels(tmp_path):
    path = tmp_path / "gray.png"
    Image.fromarray(np.full((16, 16), 60, np.uint8), mode="L").save(path)

    _, rgb = _stored_pixels(path)

    _assert_color(rgb[8, 8], (60, 60, 60), tolerance=3)


def test_cmyk_jpeg_converts_to_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path)  # Pure red in CMYK.

    _, rgb = _stored_pixels(path)

    _assert_color(rgb[8, 8], RED, tolerance=50)


def test_animated_gif_keeps_its_first_frame(tmp_path):
    path = tmp_path / "animated.gif"
    first, second = Image.new("RGB", (16, 16), RED), Image.new("RGB", (16, 16), BLUE)
    first.save(path, save_all=True, append_images=[second], duration=100, loop=0)

    _, rgb = _stored_pixels(path)

    _assert_color(rgb[8, 8], RED)


def test_webp_is_decoded(tmp_path):
    path = tmp_path / "image.webp"
    Image.new("RGB", (24, 16), BLUE).save(path, "WEBP", lossless=True)

    stored, rgb = _stored_pixels(path)

    assert rgb.shape == (16, 24, 3)
    assert (stored.original_width, stored.original_height) == (24, 16)
    _assert_color(rgb[8, 8], BLUE)


@pytest.mark.parametrize(
    "source_size, stored_size",
    [
        ((8, 4), (32, 16)),  # Upscaled: the shorter side is always image_size.
        ((400, 200), (32, 16)),  # Downscaled (JPEG reduced decoding path).
        ((16, 48), (16, 48)),  # Already at size.
    ],
)
def test_shorter_side_becomes_image_size(tmp_path, source_size, stored_size):
    path = tmp_path / "sized.jpg"
    Image.new("RGB", source_size, RED).save(path)

    stored, rgb = _stored_pixels(path, image_size=16)

    assert (rgb.shape[1], rgb.shape[0]) == stored_size
    assert (stored.original_width, stored.original_height) == source_size
    assert not stored.aspect_cropped


def test_extreme_aspect_ratio_is_centre_cropped(tmp_path):
    path = tmp_path / "strip.png"
    Image.new("RGB", (200, 10), RED).save(path)

    stored, rgb = _stored_pixels(path, image_size=16)

    assert stored.aspect_cropped
    assert (rgb.shape[1], rgb.shape[0]) == (int(16 * image_io.MAX_ASPECT_RATIO), 16)


def _truncated_jpeg(path):
    noise = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    encoded = io.BytesIO()
    Image.fromarray(noise).save(encoded, "JPEG")
    path.write_bytes(encoded.getvalue()[: len(encoded.getvalue()) // 2])


@pytest.mark.parametrize(
    "make_file, reason",
    [
        (lambda path: None, image_io.MISSING_IMAGE),
        (lambda path: path.mkdir(), image_io.UNREADABLE_IMAGE),
        (lambda path: path.write_bytes(b""), image_io.ZERO_SIZE_IMAGE),
        (
            lambda path: path.write_bytes(np.random.default_rng(1).bytes(500)),
            image_io.CORRUPT_IMAGE,
        ),
        (_truncated_jpeg, image_io.CORRUPT_IMAGE),
        (lambda path: Image.new("RGB", (60, 60)).save(path, "JPEG"), image_io.IMAGE_TOO_LARGE),
    ],
)
def test_bad_files_are_rejected_with_their_reason(tmp_path, make_file, reason):
    path = tmp_path / "bad.jpg"
    make_file(path)

    with pytest.raises(image_io.ImageRejected) as rejected:
        image_io.load_listing_image(str(path), 16, max_pixels=2000)

    assert rejected.value.reason == reason
    assert rejected.value.detail
    assert image_io.image_outcome((str(path), 16, 2000)) == (reason, rejected.value.detail)


def test_reencoding_is_deterministic(tmp_path):
    path = tmp_path / "noise.png"
    noise = np.random.default_rng(2).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path)

    first = image_io.load_listing_image(str(path), 16, 10_000)
    second = image_io.load_listing_image(str(path), 16, 10_000)

    assert first.jpeg == second.jpeg


def test_image_bytes_are_stored_like_the_file(tmp_path):
    from PIL import Image as PILImage  # pylint: disable=g-import-not-at-top

    path = tmp_path / "photo.png"
    PILImage.new("RGB", (50, 30), (10, 200, 30)).save(path)
    from_file = image_io.load_listing_image(str(path), 16, 10_000)
    from_bytes = image_io.store_image_bytes(path.read_bytes(), 16, 10_000)
    assert from_bytes == from_file
    with pytest.raises(image_io.ImageRejected) as rejected:
        image_io.store_image_bytes(b"", 16, 10_000)
    assert rejected.value.reason == image_io.ZERO_SIZE_IMAGE
