"""Classical reference embeddings that every evaluation reports beside the model.

A pretrained embedding means something only next to what a catalog already has
(docs/design.md, "Reference rows"). These are computed on the same splits, with the same protocol:

  * `title_tfidf`: TF-IDF of the titles, word unigrams plus character 3-grams (scikit-learn's
    `TfidfVectorizer`, fitted on the train split's titles), each part L2-normalised;
  * `colour_histogram`: a joint RGB histogram of the photo (8 bins a channel, 512 bins),
    square-rooted (the Hellinger map, so that cosine similarity compares distributions);
  * `tfidf+histogram`: the two, each L2-normalised, concatenated with equal weight.

A listing a baseline sees nothing of (no title for TF-IDF, no photo for the histogram, or a
modality removed for the balance check) gets one constant "empty" feature, so it matches only
other empty listings: a query left with nothing retrieves at chance, as it should.
"""

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

COLOUR_BINS_PER_CHANNEL = 8
CHAR_NGRAM_MAX_FEATURES = 2**16


class ListingBatch(NamedTuple):
    """What a classical baseline reads of a split: titles and decoded photos."""

    titles: list[str]
    images: np.ndarray  # float32 [N, S, S, 3] in [-1, 1].
    has_image: np.ndarray  # int [N].


class Baseline(NamedTuple):
    """A fitted reference: `embed(listings, removal)` -> float32 [N, D]."""

    name: str
    embed: Callable[[ListingBatch, str | None], np.ndarray]


def _with_empty_feature(features: np.ndarray) -> np.ndarray:
    """Appends a column that is 1 only on all-zero rows, then L2-normalises every row."""
    empty = ~(np.abs(features).sum(axis=1) > 0)
    features = np.concatenate([features, empty[:, None].astype(np.float32)], axis=1)
    return normalize(features).astype(np.float32)


def fit_title_tfidf(train_titles: list[str]) -> Callable[[list[str]], np.ndarray]:
    """Fits word and char-3-gram TF-IDF on the train titles; returns titles -> [N, D]."""
    titles = [title for title in train_titles if title.strip()]
    if not titles:
        raise ValueError("title TF-IDF needs at least one non-empty train title")
    words = TfidfVectorizer(analyzer="word", token_pattern=r"(?u)\b\w+\b", sublinear_tf=True)
    chars = TfidfVectorizer(
        analyzer="char_wb",
        ngram_range=(3, 3),
        sublinear_tf=True,
        max_features=CHAR_NGRAM_MAX_FEATURES,
    )
    words.fit(titles)
    chars.fit(titles)

    def transform(batch_titles: list[str]) -> np.ndarray:
        parts = [
            normalize(vectorizer.transform(batch_titles)).toarray() for vectorizer in (words, chars)
        ]
        return np.concatenate(parts, axis=1).astype(np.float32)

    return transform


def colour_histograms(images: np.ndarray, has_image: np.ndarray) -> np.ndarray:
    """Joint RGB histograms [N, bins^3], L1 = 1 and square-rooted; zero rows without a photo."""
    bins = COLOUR_BINS_PER_CHANNEL
    levels = np.clip(((np.asarray(images) + 1.0) * 0.5 * bins).astype(np.int64), 0, bins - 1)
    codes = (levels[..., 0] * bins + levels[..., 1]) * bins + levels[..., 2]
    codes = codes.reshape(len(codes), -1)
    counts = (
        np.stack([np.bincount(row, minlength=bins**3) for row in codes]).astype(np.float32)
        if len(codes)
        else np.zeros((0, bins**3), np.float32)
    )
    counts *= (np.asarray(has_image) > 0)[:, None]
    totals = np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    return np.sqrt(counts / totals)


def fit_baselines(train_titles: list[str]) -> list[Baseline]:
    """The three references, fitted on the train split (only TF-IDF has anything to fit)."""
    tfidf = fit_title_tfidf(train_titles)

    def title_part(listings, removal):
        titles = [""] * len(listings.titles) if removal == "title" else listings.titles
        return tfidf(titles)

    def image_part(listings, removal):
        has_image = np.zeros_like(listings.has_image) if removal == "image" else listings.has_image
        return colour_histograms(listings.images, has_image)

    def concatenated(listings, removal):
        parts = [
            normalize(part)
            for part in (title_part(listings, removal), image_part(listings, removal))
        ]
        return _with_empty_feature(np.concatenate(parts, axis=1) / np.sqrt(2.0))

    return [
        Baseline(
            "title_tfidf",
            lambda listings, removal: _with_empty_feature(title_part(listings, removal)),
        ),
        Baseline(
            "colour_histogram",
            lambda listings, removal: _with_empty_feature(image_part(listings, removal)),
        ),
        Baseline("tfidf+histogram", concatenated),
    ]
