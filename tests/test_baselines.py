"""The classical reference rows: title TF-IDF, colour histogram, and their concatenation."""

import numpy as np
import pytest

from item_jax import train_step
from item_jax.evaluation import baselines, protocol, retrieval


def _listings(titles, colours):
    """One flat-coloured 8x8 photo per listing; colour None means no photo."""
    images = np.zeros((len(colours), 8, 8, 3), np.float32)
    has_image = np.zeros(len(colours), np.int32)
    for row, colour in enumerate(colours):
        if colour is not None:
            images[row] = np.asarray(colour, np.float32)
            has_image[row] = 1
    return baselines.ListingBatch(list(titles), images, has_image)


def _by_name(fitted):
    return {baseline.name: baseline for baseline in fitted}


def test_title_tfidf_matches_shared_words_and_character_variants():
    train_titles = [
        "Kestrel ceramic mug 12 oz",
        "Marlow bamboo plate 8 inch",
        "Fenwick cotton tote large",
        "Kestrel porcelain mug 16oz",
    ]
    tfidf = baselines.fit_title_tfidf(train_titles)
    queries = tfidf(["KESTREL ceramic coffee mug", "marlow bamboo plates"])
    gallery = tfidf(train_titles)
    similarity = queries @ gallery.T
    assert similarity[0].argmax() == 0  # Words shared, case ignored.
    assert similarity[1].argmax() == 1  # "plates" still shares character 3-grams.
    assert similarity[0, 0] > similarity[0, 3] > similarity[0, 2]


def test_title_tfidf_needs_a_title():
    with pytest.raises(ValueError, match="non-empty train title"):
        baselines.fit_title_tfidf(["", "  "])


def test_colour_histogram_separates_colours_and_ignores_titles():
    red, blue = (0.9, -0.9, -0.9), (-0.9, -0.9, 0.9)
    histograms = baselines.colour_histograms(
        _listings(["a"] * 3, [red, red, blue]).images, np.ones(3, np.int32)
    )
    np.testing.assert_allclose(np.linalg.norm(histograms, axis=1), 1.0, rtol=1e-6)
    assert histograms[0] @ histograms[1] == pytest.approx(1.0)
    assert histograms[0] @ histograms[2] == pytest.approx(0.0)
    assert not baselines.colour_histograms(np.zeros((1, 8, 8, 3)), np.zeros(1)).any()


def test_concatenation_needs_both_modalities_to_tell_twins_apart():
    red, blue = (0.9, -0.9, -0.9), (-0.9, -0.9, 0.9)
    # Two products with the same title words, told apart only by colour.
    listings = _listings(
        ["Kestrel mug", "Kestrel mug", "Kestrel mug", "Kestrel mug"], [red, blue, red, blue]
    )
    groups = np.array([0, 1, 0, 1])
    fitted = _by_name(baselines.fit_baselines(listings.titles))
    recall = {}
    for name, baseline in fitted.items():
        embeddings = baseline.embed(listings, None)
        recall[name] = retrieval.retrieval_metrics(
            embeddings, groups, embeddings, groups, query_gallery_index=np.arange(4)
        )["recall@1"]
    assert recall["tfidf+histogram"] == 1.0
    assert recall["colour_histogram"] == 1.0
    assert recall["title_tfidf"] < 1.0  # Identical titles tie; the tie goes to row order.


def test_a_removed_modality_leaves_a_baseline_nothing_to_match():
    listings = _listings(["Kestrel mug", "Marlow plate"], [(0.9, 0, 0), None])
    fitted = _by_name(baselines.fit_baselines(listings.titles))
    without_title = fitted["title_tfidf"].embed(listings, "title")
    # Every query left without features is the same "empty" vector, orthogonal to real ones.
    np.testing.assert_allclose(without_title[0], without_title[1])
    assert without_title @ fitted["title_tfidf"].embed(listings, None).T == pytest.approx(0.0)
    # The listing without a photo is empty for the histogram even before any removal.
    histogram = fitted["colour_histogram"].embed(listings, None)
    assert histogram[0] @ histogram[1] == pytest.approx(0.0)
    both = fitted["tfidf+histogram"].embed(listings, "image")
    np.testing.assert_allclose(
        both,
        fitted["tfidf+histogram"].embed(listings._replace(has_image=np.zeros(2, np.int32)), None),
    )


@pytest.mark.slow
def test_evaluation_reports_every_reference_row(trained_workdir, catalog_shards, tmp_path):
    config, params, _ = train_step.restore_trained_params(trained_workdir)
    metrics = protocol.evaluate_params(params, config, catalog_shards, out_dir=str(tmp_path))
    references = metrics["references"]
    assert list(references) == ["untrained", "title_tfidf", "colour_histogram", "tfidf+histogram"]
    for name, reference in references.items():
        for section in (
            "retrieval",
            "retrieval_no_title",
            "retrieval_no_image",
            "linear_probe",
            "knn",
        ):
            assert section in reference, (name, section)
        assert reference["retrieval"]["num_queries"] == metrics["retrieval"]["num_queries"]
    # TF-IDF ignores the photo; the histogram ignores the title.
    tfidf, histogram = references["title_tfidf"], references["colour_histogram"]
    assert tfidf["retrieval_no_image"]["recall@1"] == tfidf["retrieval"]["recall@1"]
    assert histogram["retrieval_no_title"]["recall@1"] == histogram["retrieval"]["recall@1"]
    assert tfidf["retrieval"]["recall@1"] > 0.5  # Titles name the product here.
    summary = protocol.format_summary(metrics)
    for name in ("trained", *references):
        assert name in summary
    assert "vs untrained: R@1" in summary and "vs title TF-IDF: R@1" in summary
    with open(tmp_path / "report.md", encoding="utf-8") as f:
        report_text = f.read()
    assert "| title_tfidf |" in report_text and "| untrained |" in report_text


def test_untrained_reference_is_where_training_starts(catalog_shards):
    import jax  # pylint: disable=g-import-not-at-top
    from conftest import small_config  # pylint: disable=g-import-not-at-top

    from item_jax import sharding, train_step  # pylint: disable=g-import-not-at-top
    from item_jax.model import model_from_config  # pylint: disable=g-import-not-at-top

    config = small_config(seed=3)
    model = model_from_config(config.model)
    setup = train_step.build_train_setup(model, config, sharding.make_mesh(config.mesh))
    started = jax.device_get(setup.init_state(jax.random.key(config.seed))["params"])
    untrained = train_step.initial_params(model, config.seed)
    for a, b in zip(jax.tree.leaves(started), jax.tree.leaves(untrained)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
