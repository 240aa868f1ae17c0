"""Same-product retrieval metrics: hand-computed fixtures, ties, skipped queries, brute force."""

import numpy as np
import pytest

from item_jax.evaluation import retrieval

# Six unit vectors in 2-D. Rows 2 and 3 are the same vector, so every query scores them
# equally (an exact tie); row 5 is the only member of group C.
#   row     0    1    2    3    4    5
#   angle   0   15   40   40   90  220  (degrees)
#   group   A    A    B    A    B    C
ANGLES_DEGREES = (0, 15, 40, 40, 90, 220)
GROUPS = np.array(["A", "A", "B", "A", "B", "C"])
SELF_INDEX = np.arange(6)

# Cosine order = order of angular distance; ties (rows 2 and 3) go to the lower row first.
#   query 0 (A):  1(A) 15deg, 2(B) 40, 3(A) 40, 4(B) 90, 5(C) 140   R=2, hits at ranks 1, 3
#   query 1 (A):  0(A) 15,    2(B) 25, 3(A) 25, 4(B) 75, 5(C) 155   R=2, hits at ranks 1, 3
#   query 2 (B):  3(A) 0,     1(A) 25, 0(A) 40, 4(B) 50, 5(C) 180   R=1, hit at rank 4
#   query 3 (A):  2(B) 0,     1(A) 25, 0(A) 40, 4(B) 50, 5(C) 180   R=2, hits at ranks 2, 3
#   query 4 (B):  2(B) 50,    3(A) 50, 1(A) 75, 0(A) 90, 5(C) 130   R=1, hit at rank 1
#   query 5 (C):  no other member of C -> skipped.
# AP@R = (1/R) * sum of precision@i over relevant ranks i <= R:
#   q0: (1/2)(1/1 + 0) = 0.5    q1: (1/2)(1/1 + 0) = 0.5    q2: (1/1)(0) = 0
#   q3: (1/2)(0 + 1/2) = 0.25   q4: (1/1)(1/1) = 1
# First hits at ranks 1, 1, 4, 2, 1 over 5 evaluated queries:
#   recall@1 = 3/5, recall@2 = 4/5, recall@3 = 4/5, recall@4 = 5/5
#   mAP@R = (0.5 + 0.5 + 0 + 0.25 + 1) / 5 = 0.45
EXPECTED_FIRST_HIT_RANKS = [1, 1, 4, 2, 1]
EXPECTED_AVERAGE_PRECISION = [0.5, 0.5, 0.0, 0.25, 1.0]


def unit_vectors(angles_degrees) -> np.ndarray:
    radians = np.deg2rad(np.asarray(angles_degrees, np.float64))
    return np.stack([np.cos(radians), np.sin(radians)], axis=1)


def fixture_metrics(**kwargs) -> dict:
    embeddings = unit_vectors(ANGLES_DEGREES)
    kwargs.setdefault("query_gallery_index", SELF_INDEX)
    return retrieval.retrieval_metrics(embeddings, GROUPS, embeddings, GROUPS, **kwargs)


def test_hand_computed_recall_and_map_at_r():
    metrics = fixture_metrics(ks=(1, 2, 3, 4))
    assert metrics["recall@1"] == pytest.approx(3 / 5)
    assert metrics["recall@2"] == pytest.approx(4 / 5)
    assert metrics["recall@3"] == pytest.approx(4 / 5)
    assert metrics["recall@4"] == pytest.approx(1.0)
    assert metrics["map@r"] == pytest.approx(0.45)
    assert metrics["num_queries"] == 5
    assert metrics["num_skipped_queries"] == 1
    assert metrics["num_map_r_capped_queries"] == 0
    assert metrics["num_gallery"] == 6


def test_per_query_outcomes_follow_the_tie_rule():
    # Ordering the tied rows 2 and 3 the other way would give query 0 hits at ranks 1, 2
    # (AP 1.0), query 3 a first hit at rank 1 and query 4 a first hit at rank 2 (AP 0).
    embeddings = unit_vectors(ANGLES_DEGREES)
    outcomes = retrieval.rank_queries(
        embeddings, GROUPS, embeddings, GROUPS, query_gallery_index=SELF_INDEX, max_rank=5
    )
    np.testing.assert_array_equal(outcomes.query_rows, [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(outcomes.first_hit_rank, EXPECTED_FIRST_HIT_RANKS)
    np.testing.assert_allclose(outcomes.average_precision_at_r, EXPECTED_AVERAGE_PRECISION)
    np.testing.assert_array_equal(outcomes.num_relevant, [2, 2, 1, 2, 1])


def test_tied_scores_come_in_gallery_index_order_across_gallery_tiles():
    # One query and many identical gallery rows spanning several gallery tiles: the top-k
    # must be the lowest indices, in order, whichever tile they came from.
    num_gallery = 2 * retrieval.GALLERY_TILE_ROWS + 5
    gallery = np.tile([[1.0, 2.0]], (num_gallery, 1))
    gallery[7] = [2.0, -1.0]  # Orthogonal to the query: ranked last.
    chunks = list(
        retrieval.iter_cosine_top_k(
            np.array([[3.0, 6.0]]), gallery, k=8, exclude_gallery_index=np.array([2])
        )
    )
    assert len(chunks) == 1
    _, scores, indices = chunks[0]
    np.testing.assert_array_equal(indices[0], [0, 1, 3, 4, 5, 6, 8, 9])
    np.testing.assert_allclose(scores[0], 1.0, rtol=1e-6)


def test_map_at_r_cap_scores_the_top_ranks_only():
    # max_map_r=1 caps R at 1 for queries 0, 1 and 3 (R = 2); AP = precision@1 if rank 1 is
    # relevant: q0 1, q1 1, q2 0, q3 0, q4 1 -> mAP@R = 3/5.
    metrics = fixture_metrics(ks=(1,), max_map_r=1)
    assert metrics["map@r"] == pytest.approx(3 / 5)
    assert metrics["num_map_r_capped_queries"] == 3
    assert metrics["recall@1"] == pytest.approx(3 / 5)


def test_map_at_r_on_a_known_ranking():
    # Query at 0 degrees, gallery at 10, 20, 30, 40 degrees (ranked in that order); relevant
    # rows 0 and 2 -> R = 2, relevant at ranks 1 and 3: AP@R = (1/2)(1/1 + 0) = 0.5.
    # Relevant rows 1 and 2 -> ranks 2 and 3: AP@R = (1/2)(0 + 1/2) = 0.25.
    # Relevant rows 0, 1 and 3 -> R = 3, ranks 1, 2, 4: AP@R = (1/3)(1/1 + 2/2 + 0) = 2/3.
    query = unit_vectors([0])
    gallery = unit_vectors([10, 20, 30, 40])
    for relevant_rows, expected in (((0, 2), 0.5), ((1, 2), 0.25), ((0, 1, 3), 2 / 3)):
        gallery_groups = np.array([1 if row in relevant_rows else 2 for row in range(4)])
        metrics = retrieval.retrieval_metrics(
            query, np.array([1]), gallery, gallery_groups, ks=(1,)
        )
        assert metrics["map@r"] == pytest.approx(expected), relevant_rows


def test_own_row_is_excluded_only_when_given():
    without_exclusion = fixture_metrics(ks=(1,), query_gallery_index=None)
    # Every query now finds itself (R grows by one) and query 5 is no longer skipped.
    assert without_exclusion["num_queries"] == 6
    assert without_exclusion["num_skipped_queries"] == 0
    assert without_exclusion["recall@1"] > fixture_metrics(ks=(1,))["recall@1"]


def test_queries_outside_the_gallery():
    # Queries at 5 and 85 degrees against the fixture gallery, not part of it (-1).
    queries = unit_vectors([5, 85])
    gallery = unit_vectors(ANGLES_DEGREES)
    # Query "B" at 5: 0(A) 5, 1(A) 10, 2(B) 35 -> first hit rank 3, R=2 (2, 4): AP = 0.
    # Query "C" at 85: 4(B) 5, 2(B) 45, 3(A) 45, ..., 5(C) 135 -> R=1, rank 6: AP = 0.
    metrics = retrieval.retrieval_metrics(
        queries,
        np.array(["B", "C"]),
        gallery,
        GROUPS,
        query_gallery_index=np.array([-1, -1]),
        ks=(1, 3, 6),
    )
    assert metrics["num_queries"] == 2
    assert (metrics["recall@1"], metrics["recall@3"], metrics["recall@6"]) == (0.0, 0.5, 1.0)
    assert metrics["map@r"] == 0.0


def test_all_queries_skipped_gives_nan_metrics():
    embeddings = unit_vectors([0, 90, 180])
    groups = np.array([1, 2, 3])
    metrics = retrieval.retrieval_metrics(
        embeddings, groups, embeddings, groups, query_gallery_index=np.arange(3), ks=(1,)
    )
    assert metrics["num_queries"] == 0 and metrics["num_skipped_queries"] == 3
    assert np.isnan(metrics["recall@1"]) and np.isnan(metrics["map@r"])


def test_chunk_size_does_not_change_the_metrics(random_case):
    embeddings, groups = random_case
    kwargs = dict(query_gallery_index=np.arange(len(groups)), ks=(1, 5, 10))
    small_chunks = retrieval.retrieval_metrics(
        embeddings, groups, embeddings, groups, chunk_size=1, **kwargs
    )
    one_chunk = retrieval.retrieval_metrics(
        embeddings, groups, embeddings, groups, chunk_size=100_000, **kwargs
    )
    assert small_chunks == one_chunk


def test_recall_curve_is_monotone_and_matches_recall_at_k(random_case):
    embeddings, groups = random_case
    self_index = np.arange(len(groups))
    curve = retrieval.recall_at_k_curve(
        embeddings, groups, embeddings, groups, query_gallery_index=self_index, max_k=20
    )
    metrics = retrieval.retrieval_metrics(
        embeddings, groups, embeddings, groups, query_gallery_index=self_index, ks=(1, 5, 10, 20)
    )
    assert curve.shape == (20,)
    assert np.all(np.diff(curve) >= 0)
    for k in (1, 5, 10, 20):
        assert curve[k - 1] == metrics[f"recall@{k}"]


def test_matches_brute_force_numpy(random_case):
    embeddings, groups = random_case
    metrics = retrieval.retrieval_metrics(
        embeddings,
        groups,
        embeddings,
        groups,
        query_gallery_index=np.arange(len(groups)),
        ks=(1, 5, 10),
    )
    expected = brute_force_metrics(embeddings, groups, ks=(1, 5, 10))
    assert metrics["num_queries"] == expected["num_queries"]
    assert metrics["num_skipped_queries"] == expected["num_skipped_queries"]
    assert 0.2 < expected["recall@1"] < 0.9  # A case where ranking mistakes are possible.
    # float32 on the device vs float64 here may swap a near-tied pair for a query or two.
    tolerance = 2 / expected["num_queries"]
    for name in ("recall@1", "recall@5", "recall@10", "map@r"):
        assert metrics[name] == pytest.approx(expected[name], abs=tolerance), name


def test_exact_ties_match_brute_force_across_tiles_for_any_chunk_size():
    # Corners of the 4-D cube normalise to entries of +-0.5: every score is exact in float32,
    # most of them tie, and 2100 rows span three gallery tiles and 17 query tiles. The
    # device must then agree with the float64 reference exactly, not within a tolerance.
    rng = np.random.default_rng(0)
    embeddings = rng.choice([-1.0, 1.0], size=(2100, 4))
    groups = rng.integers(0, 700, size=2100)
    expected = brute_force_metrics(embeddings, groups, ks=(1, 5, 10))
    for chunk_size in (1, 1000):
        metrics = retrieval.retrieval_metrics(
            embeddings,
            groups,
            embeddings,
            groups,
            query_gallery_index=np.arange(2100),
            ks=(1, 5, 10),
            chunk_size=chunk_size,
        )
        for name, value in expected.items():
            assert metrics[name] == pytest.approx(value, abs=1e-12), name


def test_top_k_is_bit_identical_across_chunk_sizes():
    rng = np.random.default_rng(1)
    embeddings = rng.standard_normal((1500, 48)).astype(np.float32)
    runs = [
        list(retrieval.iter_cosine_top_k(embeddings, embeddings, k=20, chunk_size=chunk_size))
        for chunk_size in (1, 1000)
    ]
    scores = [np.concatenate([chunk[1] for chunk in run]) for run in runs]
    indices = [np.concatenate([chunk[2] for chunk in run]) for run in runs]
    np.testing.assert_array_equal(scores[0], scores[1])
    np.testing.assert_array_equal(indices[0], indices[1])
    unit = embeddings.astype(np.float64)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    reference = np.argsort(-(unit @ unit.T), axis=1, kind="stable")
    np.testing.assert_array_equal(indices[0][:, :5], reference[:, :5])


def test_k_beyond_the_gallery_fills_with_no_item():
    _, scores, indices = next(
        retrieval.iter_cosine_top_k(
            np.array([[1.0, 0.0]]),
            np.array([[1.0, 0.0], [0.0, 1.0]]),
            k=3,
            exclude_gallery_index=np.array([0]),
        )
    )
    np.testing.assert_array_equal(indices, [[1, 2, 2]])  # Row 2 = len(gallery): no item.
    assert scores[0, 0] == 0.0 and np.isneginf(scores[0, 1:]).all()


def test_bad_arguments_raise_clear_errors():
    embeddings = unit_vectors(ANGLES_DEGREES)
    with pytest.raises(ValueError, match="query_groups must have shape"):
        retrieval.retrieval_metrics(embeddings, GROUPS[:5], embeddings, GROUPS)
    with pytest.raises(ValueError, match="different groups"):
        retrieval.retrieval_metrics(
            embeddings, GROUPS, embeddings, GROUPS, query_gallery_index=np.array([2, 1, 0, 3, 4, 5])
        )
    with pytest.raises(ValueError, match="outside"):
        retrieval.retrieval_metrics(
            embeddings, GROUPS, embeddings, GROUPS, query_gallery_index=np.array([0, 1, 2, 3, 4, 6])
        )
    with pytest.raises(ValueError, match="ks must be positive"):
        fixture_metrics(ks=(0, 1))
    with pytest.raises(ValueError, match="differ in width"):
        retrieval.retrieval_metrics(embeddings, GROUPS, np.ones((6, 3)), GROUPS)
    zero_row = embeddings.copy()
    zero_row[1] = 0
    with pytest.raises(ValueError, match="row 1 is zero or not finite"):
        retrieval.retrieval_metrics(zero_row, GROUPS, embeddings, GROUPS)


@pytest.fixture(scope="module")
def random_case() -> tuple[np.ndarray, np.ndarray]:
    """3000 x 64 embeddings: groups of 1-4 around random centres, plus exact duplicates."""
    rng = np.random.default_rng(0)
    group_sizes = rng.integers(1, 5, size=1200)
    groups = np.repeat(np.arange(len(group_sizes)), group_sizes)[:3000]
    centres = rng.normal(size=(len(group_sizes), 64))
    embeddings = centres[groups] + 0.9 * rng.normal(size=(len(groups), 64))
    # Exact copies of rows of other groups: tied scores that decide rankings.
    copies = rng.choice(len(groups), size=(100, 2), replace=False)
    embeddings[copies[:, 0]] = embeddings[copies[:, 1]]
    return embeddings.astype(np.float32), groups


def brute_force_metrics(embeddings: np.ndarray, groups: np.ndarray, ks) -> dict:
    """The documented protocol with a full similarity matrix and a stable sort."""
    unit = embeddings.astype(np.float64)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    similarity = unit @ unit.T
    first_hits, average_precisions, skipped = [], [], 0
    for query in range(len(groups)):
        others = np.delete(np.arange(len(groups)), query)
        order = others[np.argsort(-similarity[query, others], kind="stable")]
        relevant = groups[order] == groups[query]
        num_relevant = int(relevant.sum())
        if num_relevant == 0:
            skipped += 1
            continue
        first_hits.append(int(np.argmax(relevant)) + 1)
        precision = np.cumsum(relevant) / np.arange(1, len(relevant) + 1)
        average_precisions.append(
            np.sum(precision[:num_relevant] * relevant[:num_relevant]) / num_relevant
        )
    first_hits = np.array(first_hits)
    metrics = {f"recall@{k}": float(np.mean(first_hits <= k)) for k in ks}
    metrics["map@r"] = float(np.mean(average_precisions))
    metrics["num_queries"] = len(first_hits)
    metrics["num_skipped_queries"] = skipped
    return metrics
