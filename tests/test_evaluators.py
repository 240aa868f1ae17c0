"""The evaluators picked by name: the registry, each evaluator on tiny arrays, and a
`config.evaluators` subset running only its evaluators (report and validation alike)."""

import numpy as np
import pytest
from conftest import small_config

from item_jax import config_check, configs
from item_jax.configs import defaults as config_defaults
from item_jax.evaluation import matching, protocol
from item_jax.evaluation.evaluators import registry
from item_jax.evaluation.evaluators.inputs import EvaluationInputs, SplitEmbeddings

NUM_GROUPS = 4


def _split(full, without_title=None, without_image=None, repeats=2):
    """Listings of NUM_GROUPS products, `repeats` each; the category is the group."""
    groups = np.repeat(np.arange(NUM_GROUPS), repeats)
    return SplitEmbeddings(
        full,
        groups,
        groups.copy(),
        [str(row) for row in range(len(groups))],
        without_title=without_title,
        without_image=without_image,
    )


def _perfect(repeats=2):
    """One-hot embeddings of the group: every listing's nearest neighbour is its product."""
    return np.repeat(np.eye(NUM_GROUPS, dtype=np.float32), repeats, axis=0)


def _uninformative(repeats=2):
    """Every listing embedded alike: retrieval ranks by the tie-break alone."""
    return np.ones((NUM_GROUPS * repeats, NUM_GROUPS), np.float32)


def _inputs(split, train=None, **kwargs):
    return EvaluationInputs(split=split, train=train, num_classes=NUM_GROUPS, **kwargs)


def test_the_default_config_runs_every_evaluator():
    assert registry.NAMES == (
        "retrieval",
        "modality_balance",
        "probe",
        "knn",
        "matching",
        "references",
    )
    config = config_defaults.default_config()
    assert registry.of_config(config) == registry.NAMES
    # A config saved before the field existed (an old checkpoint's) runs them all too.
    # upgrade_stored_config is the one place that fills it in.
    stored = config.to_dict()
    del stored["evaluators"]
    assert registry.of_config(configs.upgrade_stored_config(stored)) == registry.NAMES
    assert registry.parse_names(["knn", " probe "]) == ("knn", "probe")


def test_an_unknown_evaluator_is_named_beside_the_known_ones():
    with pytest.raises(registry.UnknownEvaluatorError, match="'ranking'.*known: retrieval, "):
        registry.get("ranking")
    with pytest.raises(config_check.ConfigError, match=r"config\.evaluators: .*'ranking'"):
        config_check.check_config(small_config(evaluators="retrieval,ranking"))
    with pytest.raises(config_check.ConfigError, match=r"config\.evaluators: .*known: retr"):
        config_check.check_config(small_config(evaluators=""))
    with pytest.raises(config_check.ConfigError, match=r"config\.evaluators: .*twice"):
        config_check.check_config(small_config(evaluators="knn,knn"))
    config_check.check_config(small_config(evaluators="knn,probe"))


def test_retrieval_of_perfect_embeddings_finds_every_product_first():
    metrics = registry.get("retrieval")(_inputs(_split(_perfect())))
    assert list(metrics) == ["retrieval"]
    assert metrics["retrieval"]["recall@1"] == 1.0
    assert metrics["retrieval"]["map@r"] == 1.0
    assert metrics["retrieval"]["num_queries"] == 2 * NUM_GROUPS


def test_modality_balance_is_the_recall_at_1_lost_without_each_modality():
    split = _split(_perfect(), without_title=_perfect(), without_image=_uninformative())
    metrics = registry.get("modality_balance")(_inputs(split))
    assert list(metrics) == ["retrieval_no_title", "retrieval_no_image", "modality_balance"]
    assert metrics["retrieval_no_title"]["recall@1"] == 1.0
    balance = metrics["modality_balance"]
    assert balance["recall@1_drop_without_title"] == 0.0
    assert balance["recall@1_drop_without_image"] == 1.0 - metrics["retrieval_no_image"]["recall@1"]
    assert balance["recall@1_drop_without_image"] > 0.0
    # Without a removal, there is nothing to compare with.
    assert registry.get("modality_balance")(_inputs(_split(_perfect()))) == {"modality_balance": {}}


def test_probe_and_knn_on_separable_embeddings_are_exact():
    train = _split(_perfect(3), without_title=_perfect(3), repeats=3)
    test = _split(_perfect(), without_title=_uninformative())
    probe = registry.get("probe")(_inputs(test, train))
    assert probe["linear_probe"]["top1_accuracy"] == 1.0
    # The photos alone tell nothing here: one class for every test listing.
    assert probe["linear_probe_no_title"]["top1_accuracy"] == 1.0 / NUM_GROUPS
    knn = registry.get("knn")(_inputs(test, train))
    assert knn["knn"]["top1_accuracy"] == 1.0 and knn["knn"]["k"] == 10
    # k is 10, or every train listing where there are fewer.
    assert registry.get("knn")(_inputs(test, _split(_perfect())))["knn"]["k"] == 2 * NUM_GROUPS
    # The trainer's validation embeds the train split only without titles: only the
    # image-only probe can be fitted, and k-NN has nothing to vote with.
    image_only = _split(None, without_title=_perfect(3), repeats=3)
    assert list(registry.get("probe")(_inputs(test, image_only))) == ["linear_probe_no_title"]
    assert registry.get("knn")(_inputs(test, image_only)) == {}
    assert registry.get("probe")(_inputs(test)) == {} == registry.get("knn")(_inputs(test))


def test_matching_scores_a_seeing_head_on_the_fixed_pairs():
    groups = np.arange(NUM_GROUPS).repeat(2)
    rows = len(groups)
    pairs = matching.PairSource()
    pairs.add(
        dict(
            text_tokens=groups[:, None].repeat(4, axis=1).astype(np.int32),
            text_mask=np.ones((rows, 4), np.int32),
            image=np.broadcast_to(groups[:, None, None, None], (rows, 2, 2, 3)).astype(np.float32),
            has_image=np.ones((rows,), np.int32),
            has_title=np.ones((rows,), np.int32),
            group_index=groups.astype(np.int32),
            valid=np.ones((rows,), np.int32),
        )
    )

    def seeing(inputs):  # The title's token is the group; so is every pixel of its photo.
        matched = inputs["text_tokens"][:, 0] == inputs["image"][:, 0, 0, 0]
        return np.stack([~matched, matched], axis=-1).astype(np.float32)

    split = _split(_perfect())
    metrics = registry.get("matching")(_inputs(split, pairs=pairs, matcher=seeing))
    assert metrics["itm"]["accuracy"] == 1.0 and metrics["itm"]["num_pairs"] == 2 * rows
    # An embedder without an ITM head (a classical baseline) has no section.
    assert registry.get("matching")(_inputs(split, pairs=pairs)) == {}


def test_references_are_scored_by_the_same_chosen_evaluators():
    reference = _inputs(_split(_uninformative()), data={"num_test": 8})
    inputs = _inputs(
        _split(_perfect()),
        evaluators=("retrieval", "references"),
        references={"flat": reference},
    )
    metrics = registry.run(("references", "retrieval"), inputs)
    assert list(metrics) == ["retrieval", "references"]
    assert list(metrics["references"]["flat"]) == ["retrieval", "data"]
    assert metrics["references"]["flat"]["retrieval"]["recall@1"] < 1.0
    assert registry.get("references")(_inputs(_split(_perfect()))) == {}


def test_run_returns_only_the_chosen_sections_in_report_order():
    train = _split(_perfect(3), without_title=_perfect(3), repeats=3)
    split = _split(_perfect(), without_title=_perfect(), without_image=_perfect())
    metrics = registry.run(("knn", "retrieval"), _inputs(split, train, data={"dir": "d"}))
    assert list(metrics) == ["retrieval", "knn", "data"]
    everything = registry.run(registry.NAMES, _inputs(split, train))
    assert list(everything) == [
        "retrieval",
        "retrieval_no_title",
        "retrieval_no_image",
        "modality_balance",
        "linear_probe",
        "knn",
        "linear_probe_no_title",
    ]


@pytest.mark.slow
def test_a_config_subset_runs_only_its_evaluators(catalog_shards, tmp_path):
    from item_jax.evaluation.evaluators import references  # pylint: disable=g-import-not-at-top

    config = small_config(evaluators="retrieval,matching", **{"data.dir": catalog_shards})
    params = references.untrained_params(config)
    metrics = protocol.evaluate_params(params, config, catalog_shards, out_dir=str(tmp_path))
    assert [key for key in metrics if key not in ("recall_at_k_curve", "plots")][:3] == [
        "retrieval",
        "itm",
        "data",
    ]
    assert not {"references", "knn", "linear_probe", "retrieval_no_title"} & set(metrics)
    assert "same-product search" in protocol.format_summary(metrics)
    validation = protocol.make_validation_evaluator(config, catalog_shards)(params, 0)
    # Beside the chosen evaluators, the default `model.title_pooling = "auto"` measures its
    # two candidates (tests/test_title_pooling.py).
    assert validation and {key.split(".")[0] for key in validation} == {
        "retrieval",
        "itm",
        "title_pooling",
    }
