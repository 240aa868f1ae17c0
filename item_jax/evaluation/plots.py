"""Evaluation figures (PNG, matplotlib Agg): recall curves, a PCA map, similarity histograms.

- `plot_recall_curves`: recall@k against k, one line per model.
- `plot_modality_balance`: Recall@1 of each model with full queries, without the title and
  without the image, as grouped bars.
- `plot_embedding_projection`: 2-D PCA (numpy) of the embeddings, coloured by category.
- `plot_similarity_distributions`: cosine similarity of same-group vs different-group pairs.

Sampling is drawn from `np.random.default_rng(seed)`, so a figure is the same on every run.
"""

import os
from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

MAX_LEGEND_CATEGORIES = 20
OTHER_COLOUR = "#b0b0b0"


def plot_recall_curves(
    recall_curves: Mapping[str, np.ndarray],
    path,
    *,
    title: str = "Same-product retrieval: recall@k",
) -> str:
    """One line per model: recall@k for k = 1..len(curve). Returns `path`."""
    if not recall_curves:
        raise ValueError("plot_recall_curves needs at least one curve")
    figure, axes = plt.subplots(figsize=(7, 5))
    for model_name, curve in recall_curves.items():
        curve = np.asarray(curve, np.float64)
        if curve.ndim != 1 or len(curve) == 0:
            raise ValueError(f"recall curve of {model_name!r} must be a non-empty 1-D array")
        ks = np.arange(1, len(curve) + 1)
        axes.plot(
            ks,
            curve,
            marker="o" if len(curve) <= 20 else None,
            markersize=3,
            label=f"{model_name} (R@1 {curve[0]:.3f})",
        )
    axes.set_xlabel("k (retrieved listings)")
    axes.set_ylabel("recall@k (queries with a same-product hit in top k)")
    axes.set_ylim(0, 1.02)
    axes.set_xlim(left=1)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower right")
    axes.set_title(title)
    return save_figure(figure, path)


def plot_modality_balance(
    rows: Mapping[str, Mapping[str, float]],
    path,
    *,
    title: str = "Modality balance: Recall@1 by what the query keeps",
) -> str:
    """Grouped bars: per model, R@1 for each query variant ({model: {variant: R@1}})."""
    if not rows:
        raise ValueError("plot_modality_balance needs at least one model")
    variants = list(dict.fromkeys(variant for row in rows.values() for variant in row))
    figure, axes = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / len(variants)
    positions = np.arange(len(rows))
    for offset, (variant, colour) in enumerate(
        zip(variants, ("tab:blue", "tab:orange", "tab:green", "tab:purple"))
    ):
        values = [rows[name].get(variant, np.nan) for name in rows]
        bars = axes.bar(
            positions + (offset - (len(variants) - 1) / 2) * width,
            values,
            width,
            color=colour,
            label=variant,
        )
        axes.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    axes.set_xticks(positions, list(rows), fontsize=9)
    axes.set_ylabel("Recall@1")
    axes.set_ylim(0, 1.1)
    axes.legend(loc="upper right", fontsize=8, ncol=len(variants))
    axes.set_title(title)
    axes.grid(True, axis="y", alpha=0.3)
    return save_figure(figure, path)


def plot_embedding_projection(
    embeddings,
    category_labels,
    category_names,
    path,
    *,
    max_points: int = 20000,
    seed: int = 0,
    title: str = "Product embeddings, first two principal components",
) -> str:
    """Scatter of the 2-D PCA of the embeddings, coloured by category. Returns `path`.

    PCA is fitted on all rows (through the D x D covariance, so N can be large); at most
    `max_points` rows are drawn. The `MAX_LEGEND_CATEGORIES - 1` most frequent categories get
    their own colour and legend entry; the rest, and label -1, are drawn grey as "other".
    """
    embeddings = np.asarray(embeddings, np.float64)
    labels = np.asarray(category_labels)
    if embeddings.ndim != 2 or embeddings.shape[0] < 2 or labels.shape != (len(embeddings),):
        raise ValueError(
            f"need [N >= 2, D] embeddings and [N] labels, got {embeddings.shape} and {labels.shape}"
        )
    if labels.size and labels.max() >= len(category_names):
        raise ValueError(
            f"category label {labels.max()} has no name ({len(category_names)} names given)"
        )
    projected, explained = pca_2d(embeddings)
    shown = _sample_rows(len(embeddings), max_points, seed)
    counts = np.bincount(labels[labels >= 0], minlength=len(category_names))
    coloured = [
        c for c in np.argsort(-counts, kind="stable")[: MAX_LEGEND_CATEGORIES - 1] if counts[c] > 0
    ]

    figure, axes = plt.subplots(figsize=(9, 7))
    is_other = ~np.isin(labels[shown], coloured)
    if is_other.any():
        axes.scatter(
            *projected[shown][is_other].T,
            s=4,
            c=OTHER_COLOUR,
            alpha=0.5,
            label=f"other ({int(np.sum(~np.isin(labels, coloured)))})",
        )
    palette = category_palette()
    for colour_index, category in enumerate(coloured):
        rows = shown[labels[shown] == category]
        axes.scatter(
            *projected[rows].T,
            s=6,
            color=palette[colour_index],
            alpha=0.8,
            label=f"{category_names[category]} ({counts[category]})",
        )
    axes.set_xlabel(f"PC 1 ({explained[0]:.1%} of variance)")
    axes.set_ylabel(f"PC 2 ({explained[1]:.1%} of variance)")
    axes.set_title(f"{title}\n{len(shown)} of {len(embeddings)} listings shown")
    axes.legend(
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
        fontsize=8,
        markerscale=2,
        title="category (listings)",
    )
    return save_figure(figure, path)


def plot_similarity_distributions(
    embeddings,
    groups,
    path,
    *,
    max_pairs: int = 100000,
    seed: int = 0,
    bins: int = 60,
    title: str = "Cosine similarity of listing pairs",
) -> str:
    """Histograms of cosine similarity for same-group and different-group pairs.

    Same-group pairs: all of them when there are at most `max_pairs`, else `max_pairs` drawn
    (a listing of a group of two or more, then another member of its group). Different-group
    pairs: `max_pairs` random pairs, those that share a group discarded. Returns `path`.
    """
    embeddings = np.asarray(embeddings, np.float64)
    groups = np.asarray(groups)
    if embeddings.ndim != 2 or groups.shape != (len(embeddings),):
        raise ValueError(
            f"need [N, D] embeddings and [N] groups, got {embeddings.shape} and {groups.shape}"
        )
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    if not (np.isfinite(norms).all() and (norms > 0).all()):
        raise ValueError("embeddings must be finite and non-zero to compare by cosine")
    unit = embeddings / norms
    rng = np.random.default_rng(seed)
    same = _cosines(unit, *_same_group_pairs(groups, max_pairs, rng))
    different = _cosines(unit, *_different_group_pairs(groups, max_pairs, rng))
    if len(same) == 0 and len(different) == 0:
        raise ValueError("no pairs to plot: need at least two listings")

    figure, axes = plt.subplots(figsize=(8, 5))
    edges = np.linspace(-1, 1, bins + 1)
    for name, values, colour in (
        ("same product", same, "tab:green"),
        ("different products", different, "tab:red"),
    ):
        if len(values):
            axes.hist(
                values,
                bins=edges,
                density=True,
                alpha=0.55,
                color=colour,
                label=f"{name}: {len(values)} pairs, mean {values.mean():.3f}",
            )
            axes.axvline(values.mean(), color=colour, linestyle="--", linewidth=1)
    axes.set_xlabel("cosine similarity")
    axes.set_ylabel("density")
    axes.set_xlim(-1, 1)
    axes.legend(loc="upper left")
    axes.set_title(title)
    return save_figure(figure, path)


def category_palette() -> list:
    """MAX_LEGEND_CATEGORIES - 1 distinct colours, none of them the grey of "other"."""
    tab20 = plt.get_cmap("tab20")
    greys = (14, 15)
    colours = [tab20(i) for i in range(20) if i not in greys]
    colours += [plt.get_cmap("tab20b")(i) for i in range(0, 20, 4)]
    return colours[: MAX_LEGEND_CATEGORIES - 1]


def pca_2d(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Projection on the top two principal axes and their fractions of the variance."""
    centred = embeddings - embeddings.mean(axis=0)
    covariance = centred.T @ centred / max(len(centred) - 1, 1)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1][:2]
    axes = eigenvectors[:, order]
    if axes.shape[1] < 2:
        axes = np.pad(axes, ((0, 0), (0, 2 - axes.shape[1])))
    # Fix each axis's sign so the picture does not flip between runs or platforms.
    signs = np.sign(axes[np.argmax(np.abs(axes), axis=0), np.arange(2)])
    axes = axes * np.where(signs == 0, 1, signs)
    total = max(float(np.sum(np.clip(eigenvalues, 0, None))), 1e-12)
    explained = np.pad(np.clip(eigenvalues[order], 0, None) / total, (0, 2 - len(order)))
    return centred @ axes, explained


def _sample_rows(num_rows: int, max_rows: int, seed: int) -> np.ndarray:
    if num_rows <= max_rows:
        return np.arange(num_rows)
    return np.sort(np.random.default_rng(seed).choice(num_rows, max_rows, replace=False))


def _same_group_pairs(
    groups: np.ndarray, max_pairs: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    _, codes, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    order = np.argsort(codes, kind="stable")
    group_starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    total_pairs = int(np.sum(sizes * (sizes - 1) // 2))
    if total_pairs <= max_pairs:
        pairs = [
            (members[i], members[j])
            for start, size in zip(group_starts, sizes)
            if size > 1
            for members in [order[start : start + size]]
            for i in range(size)
            for j in range(i + 1, size)
        ]
        pairs = np.array(pairs, np.int64).reshape(-1, 2)
        return pairs[:, 0], pairs[:, 1]
    in_shared_group = np.flatnonzero(sizes[codes] > 1)
    first = rng.choice(in_shared_group, max_pairs)
    first_code = codes[first]
    # Another member: a random offset 1..size-1 from `first` within its group, wrapped.
    rank_in_group = np.empty(len(groups), np.int64)
    rank_in_group[order] = np.arange(len(groups)) - np.repeat(group_starts, sizes)
    offsets = rng.integers(1, sizes[first_code])
    second_rank = (rank_in_group[first] + offsets) % sizes[first_code]
    second = order[group_starts[first_code] + second_rank]
    return first, second


def _different_group_pairs(
    groups: np.ndarray, max_pairs: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    if len(groups) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    first = rng.integers(0, len(groups), max_pairs)
    second = rng.integers(0, len(groups), max_pairs)
    keep = groups[first] != groups[second]
    return first[keep], second[keep]


def _cosines(unit: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    return np.einsum("nd,nd->n", unit[first], unit[second])


def save_figure(figure, path) -> str:
    """Writes the figure as PNG (the folder made if need be), closes it, returns `path`."""
    directory = os.path.dirname(os.fspath(path))
    if directory:
        os.makedirs(directory, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return path
