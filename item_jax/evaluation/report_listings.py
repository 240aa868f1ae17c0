"""The titles and photos of the listings a report shows, read back from the shards.

The evaluation keeps only embeddings and labels in memory; the HTML report shows a few
hundred listings at most (the gallery's queries and neighbours, the map's thumbnails). So
it reads the split once more, keeps the id and title of every record and the stored JPEG of
only the wanted ones, and makes small thumbnails of those: the page embeds them as data
URIs, so it is one file that opens anywhere without a network.
"""

import base64
import dataclasses
import io

import numpy as np
from PIL import Image

THUMBNAIL_PIXELS = 96
_SPEC = ("id", "title", "image")


@dataclasses.dataclass(frozen=True)
class ReportListing:
    """One listing as the report shows it."""

    id: str
    title: str
    thumbnail: np.ndarray | None  # uint8 [h, w, 3], longer side THUMBNAIL_PIXELS; None: no photo.

    @property
    def data_uri(self) -> str | None:
        """The thumbnail as an inline JPEG (`data:image/jpeg;base64,...`)."""
        if self.thumbnail is None:
            return None
        buffer = io.BytesIO()
        Image.fromarray(self.thumbnail).save(buffer, format="JPEG", quality=85)
        return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def thumbnail(jpeg: bytes, pixels: int = THUMBNAIL_PIXELS) -> np.ndarray | None:
    """uint8 RGB with the longer side `pixels`; None for an empty or undecodable photo."""
    if not jpeg:
        return None
    try:
        with Image.open(io.BytesIO(jpeg)) as image:
            image = image.convert("RGB")
            image.thumbnail((pixels, pixels))
            return np.asarray(image)
    except (OSError, ValueError):  # A broken photo is shown as missing, not a failed report.
        return None


def read_listings(data_dir: str, split: str, wanted_ids) -> dict[str, ReportListing]:
    """{id: ReportListing} for the wanted ids of the split (an error names any not found)."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    from item_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top

    wanted = set(wanted_ids)
    spec = {key: tf.io.FixedLenFeature([], tf.string, default_value=b"") for key in _SPEC}
    records = tf.data.TFRecordDataset(input_pipeline.list_split_files(data_dir, split))
    batches = records.batch(256).map(lambda serialized: tf.io.parse_example(serialized, spec))
    found = {}
    for batch in batches.as_numpy_iterator():
        for listing_id, title, jpeg in zip(batch["id"], batch["title"], batch["image"]):
            listing_id = listing_id.decode("utf-8")
            if listing_id in wanted:
                found[listing_id] = ReportListing(
                    listing_id, title.decode("utf-8"), thumbnail(jpeg)
                )
    missing = wanted - set(found)
    if missing:
        raise ValueError(
            f"{len(missing)} listings of the {split} split are not in the shards of "
            f"{data_dir}, e.g. {sorted(missing)[:3]}"
        )
    return found
