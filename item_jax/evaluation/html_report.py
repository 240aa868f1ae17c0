"""report.html beside report.md: what the embedding retrieves, and where title TF-IDF does better.

One self-contained page (every image inlined as a data URI; no network), rendered with
Jinja2 from `templates/report.html.j2`:
  * the reference table (the same rows and columns as report.md);
  * a retrieval gallery: a seeded sample of test queries, each with its photo and title and
    its top 5 neighbours (thumbnail, title, cosine; same-product matches marked), for the
    trained model and for title TF-IDF side by side;
  * the queries the model gets right at rank 1 and TF-IDF wrong, and the reverse, counted,
    with examples;
  * Recall@1 and linear-probe accuracy per category, worst first;
  * a t-SNE map of the test embeddings coloured by category, with thumbnails
    (`embedding_map.py`), and the modality-balance figures as a bar chart.
The figures are also written as PNGs beside the page; the counts and the map's measure go
into metrics.json (`model_vs_title_tfidf`, `embedding_map`).
"""

import base64
import os

import jinja2
import numpy as np

from item_jax.evaluation import embedding_map, gallery, plots, report, report_listings

HTML_FILE = "report.html"
TRAINED = "trained"
REFERENCE = "title_tfidf"
GALLERY_QUERIES = 12
DISAGREEMENT_EXAMPLES = 6
NEIGHBOURS = 5
SEED = 0
BALANCE_KEYS = (
    ("full query", "retrieval.recall@1"),
    ("without title", "retrieval_no_title.recall@1"),
    ("without image", "retrieval_no_image.recall@1"),
)


def _png_data_uri(path: str) -> str:
    with open(path, "rb") as f:
        return "data:image/png;base64," + base64.b64encode(f.read()).decode("ascii")


def _fraction(value) -> str:
    return (
        "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.3f}"
    )


class _Page:
    """Turns rows of the test split into what the template shows."""

    def __init__(self, test, sides, neighbours, listings, category_names):
        self.test, self.sides, self.neighbours = test, sides, neighbours
        self.listings, self.category_names = listings, category_names

    def listing(self, row: int) -> dict:
        listing_id = self.test.ids[row]
        shown = self.listings[listing_id]
        category = int(self.test.categories[row])
        return dict(
            id=listing_id,
            title=shown.title or "(no title)",
            src=shown.data_uri,
            category=self.category_names[category] if category >= 0 else "?",
        )

    def query(self, row: int) -> dict:
        columns = []
        for name in self.sides:
            found = self.neighbours[name]
            hits = [
                dict(self.listing(int(index)), score=f"{score:.3f}", same=bool(same))
                for index, score, same in zip(
                    found.indices[row], found.scores[row], found.same_group[row]
                )
                if index < len(self.test.ids)
            ]
            columns.append(
                dict(name=name, top1_correct=bool(found.top1_correct[row]), neighbours=hits)
            )
        return dict(self.listing(row), columns=columns)

    def wanted_rows(self, rows) -> set[int]:
        wanted = set(int(row) for row in rows)
        for row in rows:
            for found in self.neighbours.values():
                wanted.update(int(i) for i in found.indices[row] if i < len(self.test.ids))
        return wanted


def _reference_table(metrics: dict) -> dict:
    rows = {TRAINED: metrics, **metrics.get("references", {})}
    body = []
    for name, row in rows.items():
        flat = report.flatten_metrics(row)
        body.append(
            [name]
            + [
                report.format_value(flat.get(key, report.MISSING))
                for _, key in report.COMPARISON_COLUMNS
            ]
        )
    return dict(header=["model"] + [header for header, _ in report.COMPARISON_COLUMNS], rows=body)


def _category_rows(metrics, test, sides, neighbours, queries, names) -> list[dict]:
    num_classes = len(names)
    listings = np.bincount(
        np.asarray(test.categories)[np.asarray(test.categories) >= 0], minlength=num_classes
    )
    recalls = {
        name: gallery.per_category_recall_at_1(
            neighbours[name], queries, test.categories, num_classes
        )
        for name in sides
    }
    probes = {TRAINED: metrics.get("linear_probe", {}).get("per_class_accuracy")}
    if REFERENCE in sides:
        probes[REFERENCE] = (
            metrics.get("references", {})
            .get(REFERENCE, {})
            .get("linear_probe", {})
            .get("per_class_accuracy")
        )
    rows = []
    for category in range(num_classes):
        if not listings[category]:
            continue
        trained_r1 = recalls[TRAINED][1][category]
        rows.append(
            dict(
                name=names[category],
                listings=int(listings[category]),
                queries=int(recalls[TRAINED][0][category]),
                recall={name: _fraction(recalls[name][1][category]) for name in sides},
                probe={
                    name: _fraction(probe[category]) if probe else "n/a"
                    for name, probe in probes.items()
                },
                sort_key=2.0 if trained_r1 is None else trained_r1,
            )
        )
    return sorted(rows, key=lambda row: (row["sort_key"], row["name"]))


def _write_map(test, info, out_dir, listings_by_row) -> tuple[str | None, dict]:
    """The t-SNE map PNG (None when the split is too small) and its measures."""
    rows = gallery.sample_rows(np.arange(len(test.ids)), embedding_map.MAX_POINTS, SEED)
    if len(rows) < 4:
        return None, dict(
            method="t-SNE", points=int(len(rows)), skipped="fewer than 4 test listings"
        )
    coordinates = embedding_map.tsne_2d(test.full[rows], seed=SEED)
    labels = np.asarray(test.categories)[rows]
    agreement = embedding_map.map_neighbour_agreement(coordinates, labels)
    pca_agreement = embedding_map.map_neighbour_agreement(
        plots.pca_2d(np.asarray(test.full[rows], np.float64))[0], labels
    )
    thumbnails = {}
    for index in embedding_map.spread_points(coordinates, embedding_map.THUMBNAILS, SEED):
        image = listings_by_row(int(rows[index])).thumbnail
        if image is not None:
            thumbnails[int(index)] = image
    subtitle = (
        f"{len(rows)} of {len(test.ids)} listings; the nearest point on the map has the "
        f"same category for {agreement:.1%} (PCA: {pca_agreement:.1%})"
    )
    path = embedding_map.plot_embedding_map(
        coordinates,
        labels,
        info["categories"],
        os.path.join(out_dir, "embedding_map.png"),
        thumbnails=thumbnails,
        subtitle=subtitle,
    )
    return path, dict(
        method="t-SNE",
        points=int(len(rows)),
        neighbour_category_agreement=agreement,
        pca_neighbour_category_agreement=pca_agreement,
    )


def write_html_report(
    metrics: dict, test, info: dict, out_dir: str, title: str, *, data_dir: str, references: dict
) -> str:
    """Writes OUT_DIR/report.html (and its figures); adds its figures and counts to `metrics`.

    Args:
      metrics: the trained model's metrics (with "references" when they were computed).
      test: the trained model's test `SplitEmbeddings`.
      info: the shards' dataset_info (category names).
      out_dir: where report.md is.
      title: the page's title.
      data_dir: the shards, read again for the shown listings' titles and photos.
      references: {name: test SplitEmbeddings} of the reference rows; title TF-IDF's, when
        present, is the gallery's second column.
    Returns:
      The page's path.
    """
    sides = {TRAINED: test}
    if REFERENCE in references:
        if list(references[REFERENCE].ids) != list(test.ids):
            raise ValueError("the TF-IDF and model test embeddings list different listings")
        sides[REFERENCE] = references[REFERENCE]
    neighbours = {
        name: gallery.nearest_neighbours(split.full, split.groups, k=NEIGHBOURS)
        for name, split in sides.items()
    }
    queries = gallery.query_rows(test.groups)
    shown_queries = gallery.sample_rows(np.flatnonzero(queries), GALLERY_QUERIES, SEED)
    comparison = None
    examples = dict(model_wins=np.zeros(0, np.int64), reference_wins=np.zeros(0, np.int64))
    if REFERENCE in sides:
        comparison = gallery.compare_top1(neighbours[TRAINED], neighbours[REFERENCE], queries)
        examples = dict(
            model_wins=gallery.sample_rows(
                comparison["model_right_reference_wrong"], DISAGREEMENT_EXAMPLES, SEED
            ),
            reference_wins=gallery.sample_rows(
                comparison["reference_right_model_wrong"], DISAGREEMENT_EXAMPLES, SEED
            ),
        )
    page = _Page(test, sides, neighbours, {}, info["categories"])
    wanted = page.wanted_rows(np.concatenate([shown_queries, *examples.values()]))
    map_rows = gallery.sample_rows(np.arange(len(test.ids)), embedding_map.MAX_POINTS, SEED)
    # The map's thumbnails are chosen after t-SNE, so every sampled row may be asked for;
    # read their ids too (ids and titles only cost a pass; photos are kept just for these).
    wanted.update(int(row) for row in map_rows)
    page.listings = report_listings.read_listings(
        data_dir, "test", {test.ids[row] for row in wanted}
    )
    map_path, map_measures = _write_map(
        test, info, out_dir, lambda row: page.listings[test.ids[row]]
    )
    table = _reference_table(metrics)
    balance_rows = {
        row[0]: {
            variant: report.flatten_metrics(source).get(key, np.nan)
            for variant, key in BALANCE_KEYS
        }
        for row, source in zip(table["rows"], [metrics, *metrics.get("references", {}).values()])
    }
    balance_path = plots.plot_modality_balance(
        balance_rows, os.path.join(out_dir, "modality_balance.png")
    )
    figures = dict(metrics.get("plots", {}), modality_balance=balance_path)
    if map_path:
        figures["embedding_map"] = map_path
    counts = None
    if comparison is not None:
        counts = dict(
            num_queries=comparison["num_queries"],
            both_right=comparison["both_right"],
            model_right_tfidf_wrong=len(comparison["model_right_reference_wrong"]),
            tfidf_right_model_wrong=len(comparison["reference_right_model_wrong"]),
            both_wrong=comparison["both_wrong"],
        )
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("item_jax.evaluation", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    html = environment.get_template("report.html.j2").render(
        title=title,
        reference_table=table,
        sides=list(sides),
        neighbours=NEIGHBOURS,
        num_test=len(test.ids),
        num_queries=int(queries.sum()),
        gallery=[page.query(int(row)) for row in shown_queries],
        counts=counts,
        model_wins=[page.query(int(row)) for row in examples["model_wins"]],
        reference_wins=[page.query(int(row)) for row in examples["reference_wins"]],
        categories=_category_rows(metrics, test, sides, neighbours, queries, info["categories"]),
        map_measures=map_measures,
        figures={name: _png_data_uri(path) for name, path in figures.items()},
    )
    path = os.path.join(out_dir, HTML_FILE)
    with open(path, "w", encoding="utf-8") as f:
        f.write(html)
    metrics.setdefault("plots", {}).update(modality_balance=balance_path)
    if map_path:
        metrics["plots"]["embedding_map"] = map_path
    metrics["embedding_map"] = map_measures
    if counts is not None:
        metrics["model_vs_title_tfidf"] = counts
    return path
