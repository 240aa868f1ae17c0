"""Image and title preprocessing shared by the training pipeline and the export loader.

Both functions are TensorFlow graph code: `item_jax.data.input_pipeline` calls them inside
`tf.data` maps, and the export loader calls them eagerly on single tensors, so a listing is
turned into model inputs the same way everywhere.

- `decode_image`: encoded bytes -> float32 `[S, S, 3]` in `[-1, 1]` plus `has_image`.
- `pack_title_tokens`: SentencePiece ids -> `[CLS] t1..tn [SEP] <pad>..`, its mask and
  `has_title` (see the batch table of docs/design.md).
"""

import tensorflow as tf

from item_jax.data import tokenizer


def hide_accelerators_from_tensorflow() -> None:
    """Keeps TensorFlow off the GPUs so that JAX owns all accelerator memory."""
    try:
        tf.config.set_visible_devices([], "GPU")
    except (RuntimeError, ValueError):
        pass  # TensorFlow already initialised its devices; nothing left to change.


hide_accelerators_from_tensorflow()


def decode_image(image_bytes, image_size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Decodes one encoded image into the model's square input.

    The image's centred square (side = its shorter side) is cut out and resized to
    `image_size`, antialiased when shrinking: the same picture as resizing the shorter side
    to `image_size` and centre-cropping, but only the kept pixels are decoded and resized.
    JPEGs are cropped while decoding; PNG, WebP, GIF and BMP go through
    `tf.io.decode_image` (first frame of an animation, grey and alpha mapped to RGB).

    Args:
      image_bytes: scalar string tensor holding the encoded image; empty means no photo.
      image_size: S, the side of the square output.

    Returns:
      (image float32 [S, S, 3] scaled to [-1, 1], zeros when there is no photo;
       has_image int32 scalar, 1 when `image_bytes` is non-empty).
    """
    image_bytes = tf.convert_to_tensor(image_bytes, dtype=tf.string)
    has_image = tf.cast(tf.strings.length(image_bytes) > 0, tf.int32)
    image = tf.cond(
        has_image > 0,
        lambda: _decode_centre_square(image_bytes, image_size),
        lambda: tf.zeros([image_size, image_size, 3], tf.float32),
    )
    return image, has_image


def _decode_centre_square(image_bytes: tf.Tensor, image_size: int) -> tf.Tensor:
    square = tf.cond(
        tf.io.is_jpeg(image_bytes),
        lambda: _decode_jpeg_centre_square(image_bytes),
        lambda: _decode_any_centre_square(image_bytes),
    )
    # Shrinking averages each output pixel's whole footprint ("area", a box filter: the
    # antialiased resize, at a third of the cost of antialiased bilinear); enlarging cannot
    # alias and interpolates bilinearly.
    resized = tf.cond(
        tf.shape(square)[0] >= image_size,
        lambda: tf.image.resize(square, [image_size, image_size], method="area"),
        lambda: tf.image.resize(square, [image_size, image_size], method="bilinear"),
    )
    resized.set_shape([image_size, image_size, 3])
    return tf.clip_by_value(resized * (2.0 / 255.0) - 1.0, -1.0, 1.0)


def _centre_square_window(height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    side = tf.minimum(height, width)
    return tf.stack([(height - side) // 2, (width - side) // 2, side, side])


def _decode_jpeg_centre_square(image_bytes: tf.Tensor) -> tf.Tensor:
    shape = tf.image.extract_jpeg_shape(image_bytes)
    window = _centre_square_window(shape[0], shape[1])
    return tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3)


def _decode_any_centre_square(image_bytes: tf.Tensor) -> tf.Tensor:
    image = tf.io.decode_image(image_bytes, channels=3, dtype=tf.uint8, expand_animations=False)
    shape = tf.shape(image)
    window = _centre_square_window(shape[0], shape[1])
    return image[window[0] : window[0] + window[2], window[1] : window[1] + window[3]]


def pack_title_tokens(tokens, max_text_len: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Lays out title pieces in the model's text slots: `[CLS] t1..tn [SEP] <pad>..`.

    The title is truncated to `max_text_len - 2` pieces. An empty title gives `[CLS] [SEP]`
    with `has_title` 0.

    Args:
      tokens: the title's SentencePiece ids without CLS/SEP: a 1-D tensor or list for one
        title, or a `tf.RaggedTensor` `[B, None]` for a batch of titles.
      max_text_len: L, the number of text slots.

    Returns:
      (text_tokens int32 [L], text_mask int32 [L] (1 on CLS, pieces and SEP),
       has_title int32 scalar), each with a leading `[B]` for a ragged batch.
    """
    if max_text_len < 2:
        raise ValueError(
            f"max_text_len must be at least 2 (for [CLS] and [SEP]), got {max_text_len}"
        )
    if isinstance(tokens, tf.RaggedTensor):
        return _pack_token_rows(tokens, max_text_len)
    single_title = tf.cast(tf.convert_to_tensor(tokens), tf.int32)
    if single_title.shape.rank != 1:
        raise ValueError(f"tokens of one title must be 1-D, got shape {single_title.shape}")
    packed = _pack_token_rows(tf.RaggedTensor.from_tensor(single_title[tf.newaxis]), max_text_len)
    return tuple(field[0] for field in packed)


def _pack_token_rows(rows: tf.RaggedTensor, max_text_len: int):
    pieces = tf.cast(rows[:, : max_text_len - 2], tf.int32)
    num_titles = pieces.nrows()
    num_pieces = tf.cast(pieces.row_lengths(), tf.int32)
    cls_column = tf.fill([num_titles, 1], tf.constant(tokenizer.CLS_ID, tf.int32))
    sep_column = tf.fill([num_titles, 1], tf.constant(tokenizer.SEP_ID, tf.int32))
    sequences = tf.concat([cls_column, pieces, sep_column], axis=1)
    text_tokens = sequences.to_tensor(default_value=tokenizer.PAD_ID, shape=[None, max_text_len])
    text_mask = tf.sequence_mask(num_pieces + 2, max_text_len, dtype=tf.int32)
    has_title = tf.cast(num_pieces > 0, tf.int32)
    return text_tokens, text_mask, has_title
