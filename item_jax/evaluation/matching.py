"""Image-text matching on a fixed draw of pairs: does the model see which photo is whose?

Every listing of a split that has a title and a photo (up to `max_listings`, in split
order) is scored twice by the ITM head: with its own photo (a matched pair) and with the
photo of a listing of another product group, drawn once with a fixed seed (a mismatched
pair). The figure is the accuracy of the head's decision over those 2N pairs (chance:
0.5; a head that always answers one way also scores 0.5), with the accuracy on each half
beside it. The draw depends only on the split and the seed, so two models, or two steps
of one run, are scored on the same pairs.

On the embedded catalog a title names the category and a photo shows it, and a random
partner is of another category 17 times in 18: a model that recognises a product's shape
can pass 0.9 here; one that is blind to the photo stays at 0.5.
"""

from collections.abc import Callable

import numpy as np

from item_jax import batch as batch_lib

# Host inputs (`MODEL_INPUT_KEYS`) -> ITM logits [rows, 2] (index 1: matched).
Matcher = Callable[[dict], np.ndarray]

DEFAULT_MAX_LISTINGS = 2000


class PairSource:
    """The listings ITM is scored on, gathered from a split's evaluation batches."""

    def __init__(self, max_listings: int = DEFAULT_MAX_LISTINGS):
        if max_listings < 2:
            raise ValueError(f"max_listings must be >= 2, got {max_listings}")
        self.max_listings = max_listings
        self._parts = {key: [] for key in batch_lib.MODEL_INPUT_KEYS + ("group_index",)}
        self._count = 0

    def add(self, batch: dict) -> None:
        """Keeps the batch's valid rows that have both a title and a photo, up to the cap."""
        room = self.max_listings - self._count
        if room <= 0:
            return
        rows = np.flatnonzero(
            np.asarray(batch["valid"]).astype(bool)
            & np.asarray(batch["has_title"]).astype(bool)
            & np.asarray(batch["has_image"]).astype(bool)
        )[:room]
        for key, parts in self._parts.items():
            parts.append(np.asarray(batch[key])[rows])
        self._count += len(rows)

    def __len__(self) -> int:
        return self._count

    def listings(self) -> dict[str, np.ndarray]:
        return {key: np.concatenate(parts) for key, parts in self._parts.items() if parts}


def draw_partners(groups: np.ndarray, seed: int = 0) -> np.ndarray:
    """For each row, the index of a row of another group, uniformly drawn; -1 if none exists."""
    rng = np.random.default_rng(seed)
    partners = np.full(len(groups), -1, np.int64)
    for row, group in enumerate(groups):
        others = np.flatnonzero(groups != group)
        if len(others):
            partners[row] = others[rng.integers(len(others))]
    return partners


def itm_accuracy(
    matcher: Matcher, source: PairSource, *, seed: int = 0, batch_size: int = 64
) -> dict:
    """ITM accuracy over the source's matched pairs and their fixed mismatched partners.

    Returns:
      {"accuracy", "matched_accuracy", "mismatched_accuracy", "num_pairs"}; the accuracies
      are NaN when the split has no listing with another group to pair with.
    """
    listings = source.listings() if len(source) else {}
    partners = draw_partners(listings["group_index"], seed) if listings else np.zeros((0,), int)
    rows = np.flatnonzero(partners >= 0)
    if not len(rows):
        nan = float("nan")
        return dict(accuracy=nan, matched_accuracy=nan, mismatched_accuracy=nan, num_pairs=0)
    matched_right, mismatched_right = [], []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        pairs = {key: listings[key][chunk] for key in batch_lib.MODEL_INPUT_KEYS}
        matched_right.append(np.argmax(matcher(pairs), axis=-1) == 1)
        pairs["image"] = listings["image"][partners[chunk]]
        mismatched_right.append(np.argmax(matcher(pairs), axis=-1) == 0)
    matched_right = np.concatenate(matched_right)
    mismatched_right = np.concatenate(mismatched_right)
    return dict(
        accuracy=float(np.concatenate([matched_right, mismatched_right]).mean()),
        matched_accuracy=float(matched_right.mean()),
        mismatched_accuracy=float(mismatched_right.mean()),
        num_pairs=2 * len(rows),
    )
