"""report.html: the retrieval gallery, model-vs-TF-IDF disagreements, categories, the map.

The page is checked the way a person sees it: headless Chromium renders it and records
which images loaded and which tables are there.
"""

import html
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from item_jax import train_step
from item_jax.evaluation import embedding_map, gallery, plots, protocol

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Runs after the page's load event, so every inlined image has had its chance to decode.
RENDER_CHECK = """<script>
window.addEventListener('load', () => {
  const images = Array.from(document.images);
  const loaded = img => img.complete && img.naturalWidth > 0;
  const check = {
    images: images.length, loaded: images.filter(loaded).length,
    broken: images.filter(img => !loaded(img)).map(img => img.alt).slice(0, 5),
    tables: Array.from(document.querySelectorAll('table')).map(t => t.id),
    category_rows: document.querySelectorAll('#category-table tr').length - 1,
    gallery_queries: document.querySelectorAll('#gallery .query').length,
    gallery_hits: document.querySelectorAll('#gallery .hit').length,
    marked_same: document.querySelectorAll('#gallery .hit.same').length,
    map_width: (document.getElementById('embedding-map') || {}).naturalWidth || 0};
  const out = document.createElement('pre');
  out.id = 'render-check';
  out.textContent = JSON.stringify(check);
  document.body.appendChild(out);
});
</script>"""


def test_neighbours_disagreements_and_category_recall_on_a_known_split():
    # Rows 0,1 are product 7, rows 2,3 product 8, row 4 product 9 (no partner: not a query).
    groups = np.array([7, 7, 8, 8, 9])
    categories = np.array([0, 0, 1, 1, 1])
    model = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0, 1], [0.3, 0.1, 1]], np.float32)
    reference = np.array([[1, 0, 0], [0.2, 1, 0], [0, 1, 0.05], [0, 1, 0], [1, 0.1, 0]], np.float32)
    found = gallery.nearest_neighbours(model, groups, k=2)
    # Equal cosines (0 for rows 0, 1 and 2 from row 3) go to the lower row.
    assert found.indices[0].tolist() == [1, 4] and found.indices[3].tolist() == [4, 0]
    assert found.top1_correct.tolist() == [True, True, False, False, False]
    other = gallery.nearest_neighbours(reference, groups, k=2)
    assert other.top1_correct.tolist() == [False, False, True, True, False]
    queries = gallery.query_rows(groups)
    assert queries.tolist() == [True, True, True, True, False]
    counts = gallery.compare_top1(found, other, queries)
    assert counts["model_right_reference_wrong"].tolist() == [0, 1]
    assert counts["reference_right_model_wrong"].tolist() == [2, 3]
    assert counts["both_right"] == counts["both_wrong"] == 0 and counts["num_queries"] == 4
    per_query, recall = gallery.per_category_recall_at_1(found, queries, categories, 3)
    assert per_query.tolist() == [2, 2, 0] and recall == [1.0, 0.0, None]


def test_the_map_keeps_categories_apart_where_pca_mixes_them():
    # 4 categories, each a tight cluster along its own axis of 40 dimensions, plus shared
    # noise in 2 other dimensions that holds the most variance, so PCA shows the noise.
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 30)
    points = rng.normal(0, 0.05, (120, 40))
    points[np.arange(120), 2 * labels] += 1.0
    points[:, 30:32] += rng.normal(0, 0.8, (120, 2))
    coordinates = embedding_map.tsne_2d(points)
    assert coordinates.shape == (120, 2)
    assert embedding_map.map_neighbour_agreement(coordinates, labels) > 0.9
    assert embedding_map.map_neighbour_agreement(plots.pca_2d(points)[0], labels) < 0.5
    chosen = embedding_map.spread_points(coordinates, 5)
    assert len(set(chosen.tolist())) == 5


@pytest.fixture(scope="module")
def evaluated(trained_workdir, catalog_shards, tmp_path_factory):
    config, params, _ = train_step.restore_trained_params(trained_workdir)
    out = str(tmp_path_factory.mktemp("eval"))
    return protocol.evaluate_params(params, config, catalog_shards, out_dir=out), out


@pytest.mark.slow
def test_the_report_counts_agree_with_the_metrics(evaluated):
    metrics, out = evaluated
    counts = metrics["model_vs_title_tfidf"]
    queries = counts["num_queries"]
    assert queries == metrics["retrieval"]["num_queries"]
    assert (counts["both_right"] + counts["model_right_tfidf_wrong"]) / queries == pytest.approx(
        metrics["retrieval"]["recall@1"]
    )
    tfidf = metrics["references"]["title_tfidf"]["retrieval"]["recall@1"]
    assert (counts["both_right"] + counts["tfidf_right_model_wrong"]) / queries == pytest.approx(
        tfidf
    )
    assert (
        sum(
            counts[key]
            for key in (
                "both_right",
                "model_right_tfidf_wrong",
                "tfidf_right_model_wrong",
                "both_wrong",
            )
        )
        == queries
    )
    per_class = metrics["linear_probe"]["per_class_accuracy"]
    assert any(value is not None for value in per_class)
    for name in ("report.html", "embedding_map.png", "modality_balance.png"):
        assert os.path.getsize(os.path.join(out, name)) > 1000, name
    with open(os.path.join(out, "metrics.json"), encoding="utf-8") as f:
        assert json.load(f)["model_vs_title_tfidf"] == counts


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (Debian package "
    "`chromium`; `bash launch/setup_env.sh --dev` installs it)",
)
def test_chromium_renders_the_gallery_images_and_tables(evaluated, tmp_path):
    metrics, out = evaluated
    with open(os.path.join(out, "report.html"), encoding="utf-8") as f:
        page = f.read()
    assert "http://" not in page and "https://" not in page  # Nothing from a network.
    checked = tmp_path / "checked.html"
    checked.write_text(page.replace("</body>", RENDER_CHECK + "</body>"), encoding="utf-8")
    completed = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            checked.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    found = re.search(r'<pre id="render-check">(.*?)</pre>', completed.stdout, re.S)
    assert found, completed.stderr[-2000:]
    check = json.loads(html.unescape(found.group(1)))
    assert check["images"] > 20 and check["loaded"] == check["images"], check
    assert {"reference-table", "disagreement-table", "category-table"} <= set(check["tables"])
    assert check["category_rows"] >= 1 and check["map_width"] > 100
    assert check["gallery_queries"] == min(12, metrics["retrieval"]["num_queries"])
    assert check["gallery_hits"] == 2 * 5 * check["gallery_queries"]  # Model and TF-IDF.
    assert check["marked_same"] >= 1
