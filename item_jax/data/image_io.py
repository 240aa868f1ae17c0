"""Robust image decoding and re-encoding for the converter.

`load_listing_image` turns any image file PIL can read (JPEG, CMYK JPEG, PNG in palette,
RGBA, 16-bit or grayscale modes, WebP, GIF) into the stored form: RGB, EXIF orientation
applied, transparency composited on white, shorter side resized to `image_size`
(small images are upscaled, so every stored image has that shorter side), JPEG quality 90.
Animated GIF / WebP files contribute their first frame.

Images longer than `MAX_ASPECT_RATIO` times their width (or the reverse) are centre-cropped
to that ratio first: the input pipeline only ever uses the centre square, and an uncropped
1 x 50000 strip would resize to gigapixels. A bad file raises `ImageRejected` with a reason
code, which the converter records in rejects.jsonl.
"""

import dataclasses
import io
import math
import warnings

import numpy as np
from PIL import Image, ImageOps

from item_jax import file_io

# Reject reasons found while reading an image.
MISSING_IMAGE = "missing_image"
UNREADABLE_IMAGE = "unreadable_image"
CORRUPT_IMAGE = "corrupt_image"
ZERO_SIZE_IMAGE = "zero_size_image"
IMAGE_TOO_LARGE = "image_too_large"
IMAGE_REJECT_REASONS = (
    MISSING_IMAGE,
    UNREADABLE_IMAGE,
    CORRUPT_IMAGE,
    ZERO_SIZE_IMAGE,
    IMAGE_TOO_LARGE,
)

JPEG_QUALITY = 90
MAX_ASPECT_RATIO = 4.0
WHITE = (255, 255, 255)
_SIXTEEN_BIT_GRAY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class ImageRejected(Exception):
    """An image that cannot be stored; `reason` is one of IMAGE_REJECT_REASONS."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass(frozen=True)
class StoredImage:
    """A re-encoded image and facts about its source file."""

    jpeg: bytes
    original_width: int  # After EXIF orientation.
    original_height: int
    aspect_cropped: bool  # Centre-cropped to MAX_ASPECT_RATIO.


def load_listing_image(path: str, image_size: int, max_pixels: int) -> StoredImage:
    """Reads, normalises, resizes and re-encodes one image file; raises ImageRejected."""
    return store_image_bytes(_read_file(path), image_size, max_pixels)


def store_image_bytes(encoded: bytes, image_size: int, max_pixels: int) -> StoredImage:
    """`load_listing_image` for an image already in memory; raises ImageRejected."""
    if not encoded:
        raise ImageRejected(ZERO_SIZE_IMAGE, "empty image bytes")
    image = _open_image(encoded, max_pixels)
    stored_width, stored_height = image.size
    try:
        _request_reduced_decode(image, image_size)
        image.load()
        oriented = ImageOps.exif_transpose(image)
        rgb = to_rgb(oriented)
    except Exception as error:  # PIL raises many types (OSError, SyntaxError, ...).
        raise ImageRejected(CORRUPT_IMAGE, f"cannot decode: {_describe(error)}") from error
    if oriented.size != image.size:  # EXIF rotated by 90 or 270 degrees.
        stored_width, stored_height = stored_height, stored_width
    cropped = crop_to_aspect_ratio(rgb, MAX_ASPECT_RATIO)
    resized = resize_shorter_side(cropped, image_size)
    return StoredImage(
        encode_jpeg(resized), stored_width, stored_height, aspect_cropped=cropped.size != rgb.size
    )


def image_outcome(task: tuple[str, int, int]) -> StoredImage | tuple[str, str]:
    """Worker entry point: `load_listing_image(*task)`, or (reason, detail) if rejected.

    Returns rather than raises the rejection, so that it crosses process boundaries.
    """
    try:
        return load_listing_image(*task)
    except ImageRejected as rejected:
        return rejected.reason, rejected.detail


def _read_file(path: str) -> bytes:
    try:
        encoded = file_io.read_bytes(path)
    except FileNotFoundError as error:
        raise ImageRejected(MISSING_IMAGE, f"no such file: {path}") from error
    except OSError as error:
        raise ImageRejected(UNREADABLE_IMAGE, f"cannot read {path}: {_describe(error)}") from error
    if not encoded:
        raise ImageRejected(ZERO_SIZE_IMAGE, f"empty file: {path}")
    return encoded


def _open_image(encoded: bytes, max_pixels: int) -> Image.Image:
    """Opens the header only and checks the pixel count before anything is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(encoded))
    except Image.DecompressionBombError as error:
        raise ImageRejected(IMAGE_TOO_LARGE, _describe(error)) from error
    except Image.UnidentifiedImageError as error:
        raise ImageRejected(
            CORRUPT_IMAGE,
            f"not an image format PIL can read (file starts with bytes {encoded[:8].hex(' ')})",
        ) from error
    except Exception as error:
        raise ImageRejected(CORRUPT_IMAGE, f"not a readable image: {_describe(error)}") from error
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageRejected(ZERO_SIZE_IMAGE, f"image is {width}x{height}")
    if width * height > max_pixels:
        raise ImageRejected(
            IMAGE_TOO_LARGE,
            f"image is {width}x{height} = {width * height} pixels, the limit is {max_pixels}",
        )
    image.seek(0)
    return image


def _request_reduced_decode(image: Image.Image, image_size: int) -> None:
    """Lets JPEG decode at 1/2, 1/4 or 1/8 scale when that still covers `image_size`."""
    if image.format != "JPEG":
        return
    width, height = image.size
    scale = image_size / min(width, height)
    if scale < 1:
        image.draft(None, (math.ceil(width * scale), math.ceil(height * scale)))


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB version of any PIL image: 16-bit gray rescaled, transparency on white."""
    if image.mode in _SIXTEEN_BIT_GRAY_MODES:
        image = _sixteen_bit_to_gray(image)
    elif image.mode == "F":
        image = Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8))
    has_transparency = (
        "A" in image.getbands()
        or image.mode in ("RGBa", "La", "PA")
        or "transparency" in image.info
    )
    if has_transparency:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _sixteen_bit_to_gray(image: Image.Image) -> Image.Image:
    """Maps 16-bit samples [0, 65535] to 8-bit [0, 255] (PIL's convert would clip)."""
    samples = np.asarray(image).astype(np.float64)
    gray = np.clip(np.rint(samples / 257.0), 0, 255).astype(np.uint8)
    return Image.fromarray(gray, mode="L")


def crop_to_aspect_ratio(image: Image.Image, max_ratio: float) -> Image.Image:
    """Centre-crops the longer side so that long / short <= max_ratio."""
    width, height = image.size
    if max(width, height) <= max_ratio * min(width, height):
        return image
    if width > height:
        new_width = max(1, int(max_ratio * height))
        left = (width - new_width) // 2
        return image.crop((left, 0, left + new_width, height))
    new_height = max(1, int(max_ratio * width))
    top = (height - new_height) // 2
    return image.crop((0, top, width, top + new_height))


def resize_shorter_side(image: Image.Image, image_size: int) -> Image.Image:
    """Resizes so the shorter side is exactly `image_size`, keeping the aspect ratio."""
    width, height = image.size
    scale = image_size / min(width, height)
    new_size = (max(image_size, round(width * scale)), max(image_size, round(height * scale)))
    if new_size == image.size:
        return image
    return image.resize(new_size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def encode_jpeg(image: Image.Image) -> bytes:
    encoded = io.BytesIO()
    image.save(encoded, format="JPEG", quality=JPEG_QUALITY)
    return encoded.getvalue()


def _describe(error: BaseException) -> str:
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
