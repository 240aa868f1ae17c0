"""Tests for item_jax.data.preprocess: title packing and image decoding."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from item_jax.data import preprocess, tokenizer

CLS, SEP, PAD = tokenizer.CLS_ID, tokenizer.SEP_ID, tokenizer.PAD_ID


def _encode(pixels: np.ndarray, image_format: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=image_format, quality=95)
    return buffer.getvalue()


def _three_bands(height: int, width: int) -> np.ndarray:
    """A landscape image: red left third, green middle third, blue right third."""
    pixels = np.zeros((height, width, 3), np.uint8)
    third = width // 3
    pixels[:, :third, 0] = 255
    pixels[:, third : 2 * third, 1] = 255
    pixels[:, 2 * third :, 2] = 255
    return pixels


def test_pack_short_title_adds_cls_sep_and_padding():
    tokens, mask, has_title = preprocess.pack_title_tokens([11, 12, 13], max_text_len=8)
    np.testing.assert_array_equal(tokens, [CLS, 11, 12, 13, SEP, PAD, PAD, PAD])
    np.testing.assert_array_equal(mask, [1, 1, 1, 1, 1, 0, 0, 0])
    assert int(has_title) == 1
    assert tokens.dtype == tf.int32 and mask.dtype == tf.int32 and has_title.dtype == tf.int32


def test_pack_long_title_is_truncated_to_l_minus_2_pieces():
    tokens, mask, has_title = preprocess.pack_title_tokens(list(range(10, 30)), max_text_len=6)
    np.testing.assert_array_equal(tokens, [CLS, 10, 11, 12, 13, SEP])
    np.testing.assert_array_equal(mask, [1] * 6)
    assert int(has_title) == 1


def test_pack_empty_title_gives_cls_sep_and_no_title():
    tokens, mask, has_title = preprocess.pack_title_tokens(
        tf.constant([], tf.int64), max_text_len=5
    )
    np.testing.assert_array_equal(tokens, [CLS, SEP, PAD, PAD, PAD])
    np.testing.assert_array_equal(mask, [1, 1, 0, 0, 0])
    assert int(has_title) == 0


def test_pack_ragged_batch_matches_single_titles():
    titles = [[7, 8], [], list(range(20, 40))]
    tokens, mask, has_title = preprocess.pack_title_tokens(
        tf.ragged.constant(titles, dtype=tf.int64), max_text_len=7
    )
    assert tokens.shape == (3, 7) and mask.shape == (3, 7)
    for row, title in enumerate(titles):
        single = preprocess.pack_title_tokens(title, max_text_len=7)
        np.testing.assert_array_equal(tokens[row], single[0])
        np.testing.assert_array_equal(mask[row], single[1])
        assert int(has_title[row]) == int(single[2])
    np.testing.assert_array_equal(has_title, [1, 0, 1])


def test_pack_rejects_too_few_slots():
    with pytest.raises(ValueError, match="max_text_len"):
        preprocess.pack_title_tokens([5], max_text_len=1)


@pytest.mark.parametrize("image_format", ["JPEG", "PNG"])
def test_decode_shape_dtype_and_range(image_format):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
    image, has_image = preprocess.decode_image(_encode(pixels, image_format), 32)
    assert image.shape == (32, 32, 3) and image.dtype == tf.float32
    assert int(has_image) == 1
    assert float(tf.reduce_min(image)) >= -1.0 and float(tf.reduce_max(image)) <= 1.0
    assert float(tf.reduce_max(image)) - float(tf.reduce_min(image)) > 1.0


def test_decode_maps_black_and_white_to_range_ends():
    black = preprocess.decode_image(_encode(np.zeros((16, 16, 3), np.uint8), "PNG"), 8)[0]
    white = preprocess.decode_image(_encode(np.full((16, 16, 3), 255, np.uint8), "PNG"), 8)[0]
    np.testing.assert_allclose(black, -1.0, atol=1e-6)
    np.testing.assert_allclose(white, 1.0, atol=1e-6)


def test_decode_empty_bytes_gives_zeros_and_no_image():
    image, has_image = preprocess.decode_image(b"", 16)
    assert image.shape == (16, 16, 3)
    np.testing.assert_array_equal(image, np.zeros((16, 16, 3), np.float32))
    assert int(has_image) == 0


@pytest.mark.parametrize("image_format", ["JPEG", "PNG"])
def test_decode_non_square_keeps_the_centre(image_format):
    # Shorter side 60 -> 30; the centre crop of a 60x180 image keeps only the green band.
    image, _ = preprocess.decode_image(_encode(_three_bands(60, 180), image_format), 30)
    mean_rgb = tf.reduce_mean(image, axis=[0, 1]).numpy()
    assert mean_rgb[1] > 0.9, mean_rgb
    assert mean_rgb[0] < -0.9 and mean_rgb[2] < -0.9, mean_rgb


def test_decode_portrait_keeps_the_centre():
    portrait = np.transpose(_three_bands(60, 180), (1, 0, 2)).copy()  # red top, blue bottom.
    image, _ = preprocess.decode_image(_encode(portrait, "PNG"), 20)
    mean_rgb = tf.reduce_mean(image, axis=[0, 1]).numpy()
    assert mean_rgb[1] > 0.9 and mean_rgb[0] < -0.9 and mean_rgb[2] < -0.9, mean_rgb


def test_decode_grey_png_becomes_three_channels():
    grey = np.full((20, 20), 128, np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(grey, mode="L").save(buffer, format="PNG")
    image, has_image = preprocess.decode_image(buffer.getvalue(), 10)
    assert image.shape == (10, 10, 3) and int(has_image) == 1
    np.testing.assert_allclose(image, 128 * 2 / 255 - 1, atol=1e-5)


def test_decode_works_inside_a_dataset_map():
    encoded = _encode(np.zeros((24, 24, 3), np.uint8), "JPEG")
    dataset = tf.data.Dataset.from_tensor_slices([encoded, b""]).map(
        lambda image_bytes: preprocess.decode_image(image_bytes, 12)
    )
    results = list(dataset.as_numpy_iterator())
    assert [int(has_image) for _, has_image in results] == [1, 0]
    assert all(image.shape == (12, 12, 3) for image, _ in results)


def test_decode_shrinking_is_antialiased():
    # One-pixel stripes shrunk 3x: an antialiased resize averages them towards grey, point
    # sampling would keep full black and white.
    stripes = np.zeros((48, 48, 3), np.uint8)
    stripes[:, ::2] = 255
    image, _ = preprocess.decode_image(_encode(stripes, "PNG"), 16)
    assert float(tf.reduce_max(tf.abs(image))) < 0.5


def test_decode_enlarges_small_images():
    small = np.full((6, 9, 3), 200, np.uint8)
    image, has_image = preprocess.decode_image(_encode(small, "PNG"), 24)
    assert image.shape == (24, 24, 3) and int(has_image) == 1
    np.testing.assert_allclose(image, 200 * 2 / 255 - 1, atol=1e-5)
