"""A 2-D map of the test embeddings that shows their structure: t-SNE, with thumbnails.

The first two principal components of a trained embedding hold a few percent of its
variance each, so a PCA scatter shows one undifferentiated cloud even where a linear probe
reads the category almost perfectly. t-SNE (scikit-learn, cosine distances, seeded) keeps
each listing's neighbourhood instead. How much of the category structure a 2-D picture
keeps is measured, not only shown: the fraction of listings whose nearest point on the map
has their category (`map_neighbour_agreement`), for t-SNE and for PCA.
"""

import numpy as np

from item_jax.evaluation import plots

MAX_POINTS = 3000
THUMBNAILS = 16


def tsne_2d(embeddings, *, seed: int = 0) -> np.ndarray:
    """[N, 2] t-SNE coordinates of the rows (cosine distance; perplexity fitted to N)."""
    from sklearn.manifold import TSNE  # pylint: disable=g-import-not-at-top

    embeddings = np.asarray(embeddings, np.float32)
    if embeddings.ndim != 2 or len(embeddings) < 4:
        raise ValueError(f"t-SNE needs [N >= 4, D] embeddings, got {embeddings.shape}")
    perplexity = float(min(30.0, (len(embeddings) - 1) / 3.0))
    return TSNE(
        n_components=2, perplexity=perplexity, metric="cosine", init="pca", random_state=seed
    ).fit_transform(embeddings)


def map_neighbour_agreement(coordinates, labels) -> float:
    """Fraction of labelled points whose nearest other labelled point shares their label."""
    coordinates = np.asarray(coordinates, np.float64)
    labels = np.asarray(labels)
    keep = labels >= 0
    coordinates, labels = coordinates[keep], labels[keep]
    if len(labels) < 2:
        return float("nan")
    agree = []
    for start in range(0, len(labels), 1024):  # [chunk, N] distances, not [N, N] at once.
        block = coordinates[start : start + 1024]
        distances = np.sum((block[:, None, :] - coordinates[None, :, :]) ** 2, axis=-1)
        distances[np.arange(len(block)), np.arange(start, start + len(block))] = np.inf
        agree.append(labels[np.argmin(distances, axis=1)] == labels[start : start + len(block)])
    return float(np.mean(np.concatenate(agree)))


def spread_points(coordinates, count: int, seed: int = 0) -> np.ndarray:
    """`count` rows far apart on the map (farthest-point order from a seeded start)."""
    coordinates = np.asarray(coordinates, np.float64)
    if len(coordinates) == 0 or count <= 0:
        return np.zeros(0, np.int64)
    chosen = [int(np.random.default_rng(seed).integers(len(coordinates)))]
    distance = np.sum((coordinates - coordinates[chosen[0]]) ** 2, axis=1)
    while len(chosen) < min(count, len(coordinates)):
        chosen.append(int(np.argmax(distance)))
        distance = np.minimum(
            distance, np.sum((coordinates - coordinates[chosen[-1]]) ** 2, axis=1)
        )
    return np.asarray(chosen, np.int64)


def plot_embedding_map(
    coordinates,
    category_labels,
    category_names,
    path,
    *,
    thumbnails: dict | None = None,
    subtitle: str = "",
    title: str = "Test embeddings, t-SNE map",
) -> str:
    """Scatter of the map coloured by category, with thumbnails placed at their points.

    Args:
      coordinates: [N, 2] map positions.
      category_labels: [N] category indices (-1: unknown, drawn grey).
      category_names: the category names, indexed by label.
      path: the PNG to write.
      thumbnails: {row: uint8 [h, w, 3]} images drawn at those rows' positions.
      subtitle: a second title line (what the map keeps, how many points).
    Returns:
      `path`.
    """
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage  # pylint: disable=g-import-not-at-top

    coordinates = np.asarray(coordinates, np.float64)
    labels = np.asarray(category_labels)
    if coordinates.ndim != 2 or coordinates.shape[1] != 2 or labels.shape != (len(coordinates),):
        raise ValueError(
            f"need [N, 2] coordinates and [N] labels, got {coordinates.shape} and {labels.shape}"
        )
    counts = np.bincount(labels[labels >= 0], minlength=len(category_names))
    coloured = [
        c
        for c in np.argsort(-counts, kind="stable")[: plots.MAX_LEGEND_CATEGORIES - 1]
        if counts[c] > 0
    ]
    figure, axes = plt.subplots(figsize=(10, 8))
    is_other = ~np.isin(labels, coloured)
    if is_other.any():
        axes.scatter(
            *coordinates[is_other].T,
            s=6,
            c=plots.OTHER_COLOUR,
            alpha=0.5,
            label=f"other ({int(is_other.sum())})",
        )
    for colour, category in zip(plots.category_palette(), coloured):
        rows = labels == category
        axes.scatter(
            *coordinates[rows].T,
            s=9,
            color=colour,
            alpha=0.85,
            label=f"{category_names[category]} ({counts[category]})",
        )
    for row, image in (thumbnails or {}).items():
        box = AnnotationBbox(
            OffsetImage(image, zoom=28.0 / max(image.shape[:2])),
            coordinates[row],
            frameon=True,
            pad=0.1,
            bboxprops=dict(edgecolor="#444444", linewidth=0.5),
        )
        axes.add_artist(box)
    axes.set_xticks([])
    axes.set_yticks([])
    axes.set_title(title + (f"\n{subtitle}" if subtitle else ""))
    axes.legend(
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
        fontsize=8,
        markerscale=2,
        title="category (listings)",
    )
    return plots.save_figure(figure, path)
