"""Category prediction: hand-computed scores, the probe and k-NN on separable clusters."""

import numpy as np
import pytest

from item_jax.evaluation import classification

NUM_CLASSES = 5


def test_accuracy_and_macro_f1_by_hand():
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 1, 3])
    # accuracy: rows 0, 1, 3, 4 right -> 4/6.
    # F1_c = 2TP / (2TP + FP + FN):
    #   class 0: TP 2, FP 0, FN 1 -> 4/5;  class 1: TP 2, FP 1, FN 0 -> 4/5
    #   class 2: TP 0, FP 0, FN 1 -> 0;    class 3: never true, left out of the mean.
    # macro-F1 = (4/5 + 4/5 + 0) / 3 = 8/15 (over all four classes it would be 0.4).
    assert classification.accuracy(y_true, y_pred) == pytest.approx(4 / 6)
    assert classification.macro_f1(y_true, y_pred, num_classes=4) == pytest.approx(8 / 15)


def test_perfect_and_empty_predictions():
    labels = np.array([2, 0, 1, 1])
    assert classification.accuracy(labels, labels) == 1.0
    assert classification.macro_f1(labels, labels, num_classes=3) == 1.0
    empty = np.zeros(0, np.int64)
    assert np.isnan(classification.accuracy(empty, empty))
    assert np.isnan(classification.macro_f1(empty, empty, num_classes=3))


def test_score_arguments_are_checked():
    with pytest.raises(ValueError, match="equal length"):
        classification.accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="must be integers"):
        classification.accuracy(np.array([0.0, 1.0]), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"y_pred hold 1 values outside \[0, 2\)"):
        classification.macro_f1([0, 1], [0, 2], num_classes=2)
    with pytest.raises(ValueError, match=r"y_true hold 1 values outside"):
        classification.macro_f1([-1, 1], [0, 1], num_classes=2)


def test_linear_probe_separates_gaussian_clusters(clusters):
    train_x, train_y, test_x, test_y = clusters
    result = classification.linear_probe(
        train_x, train_y, test_x, test_y, num_classes=NUM_CLASSES, steps=200
    )
    assert result["top1_accuracy"] >= 0.98
    assert result["macro_f1"] >= 0.98
    assert result["train_accuracy"] >= 0.98
    assert result["final_train_loss"] < 0.2
    assert result["num_train"] == int(np.sum(train_y >= 0))
    assert result["num_test"] == int(np.sum(test_y >= 0))
    assert result["num_train_unlabelled"] == 7
    assert result["num_test_unlabelled"] == 4


def test_linear_probe_learns_nothing_from_shuffled_labels(clusters):
    train_x, train_y, test_x, test_y = clusters
    shuffled = np.random.default_rng(1).permutation(train_y)
    result = classification.linear_probe(
        train_x, shuffled, test_x, test_y, num_classes=NUM_CLASSES, steps=100
    )
    assert result["top1_accuracy"] < 0.5


@pytest.mark.parametrize("weighting", ["similarity", "majority"])
def test_knn_separates_gaussian_clusters(clusters, weighting):
    train_x, train_y, test_x, test_y = clusters
    result = classification.knn_classify(
        train_x,
        train_y,
        test_x,
        test_y,
        num_classes=NUM_CLASSES,
        k=5,
        weighting=weighting,
        chunk_size=16,
    )
    assert result["top1_accuracy"] >= 0.98
    assert result["macro_f1"] >= 0.98
    assert result["k"] == 5
    assert (result["num_train_unlabelled"], result["num_test_unlabelled"]) == (7, 4)
    assert result["num_test"] == int(np.sum(test_y >= 0))


def test_knn_votes_by_hand():
    # Test point at 0 degrees. Train: class 1 at 0 degrees, class 0 at 30 and 35 degrees.
    # k=3 majority: class 0 has 2 votes -> 0. Similarity weights exp(cos / 0.07):
    #   class 1: exp(1 / 0.07) ~ 1.6e6; class 0: exp(0.866 / 0.07) + exp(0.819 / 0.07)
    #   ~ 2.4e5 + 1.2e5 -> 1.
    radians = np.deg2rad([0, 30, 35])
    train_x = np.stack([np.cos(radians), np.sin(radians)], axis=1)
    train_y = np.array([1, 0, 0])
    test_x, test_y = np.array([[1.0, 0.0]]), np.array([0])
    majority = classification.knn_classify(
        train_x, train_y, test_x, test_y, num_classes=2, k=3, weighting="majority"
    )
    similarity = classification.knn_classify(
        train_x, train_y, test_x, test_y, num_classes=2, k=3, weighting="similarity"
    )
    assert majority["top1_accuracy"] == 1.0
    assert similarity["top1_accuracy"] == 0.0


@pytest.mark.parametrize("nearest_class", [0, 1])
def test_knn_tied_votes_go_to_the_nearer_neighbour(nearest_class):
    # k=2 majority, one vote each: the class of the nearest train row wins, whichever it is.
    train_x = np.array([[1.0, 0.0], [1.0, 0.2]])
    train_y = np.array([nearest_class, 1 - nearest_class])
    result = classification.knn_classify(
        train_x,
        train_y,
        np.array([[1.0, 0.0]]),
        np.array([nearest_class]),
        num_classes=2,
        k=2,
        weighting="majority",
    )
    assert result["top1_accuracy"] == 1.0


def test_unlabelled_rows_take_no_part(clusters):
    train_x, train_y, test_x, test_y = clusters
    # Unlabelled rows may even hold non-finite embeddings: they are dropped before use.
    train_x = train_x.copy()
    train_x[train_y == -1] = np.nan
    result = classification.knn_classify(
        train_x, train_y, test_x, test_y, num_classes=NUM_CLASSES, k=3
    )
    assert result["top1_accuracy"] >= 0.98
    assert result["num_train_unlabelled"] == 7


def test_bad_arguments_raise_clear_errors(clusters):
    train_x, train_y, test_x, test_y = clusters
    bad_labels = train_y.copy()
    bad_labels[3] = NUM_CLASSES
    with pytest.raises(ValueError, match=r"train labels hold 1 values outside \[-1, 5\)"):
        classification.linear_probe(train_x, bad_labels, test_x, test_y, num_classes=NUM_CLASSES)
    with pytest.raises(ValueError, match="test split has no labelled rows"):
        classification.knn_classify(
            train_x, train_y, test_x, np.full_like(test_y, -1), num_classes=NUM_CLASSES
        )
    with pytest.raises(ValueError, match="differ in width"):
        classification.knn_classify(
            train_x, train_y, test_x[:, :3], test_y, num_classes=NUM_CLASSES
        )
    with pytest.raises(ValueError, match="k must be in"):
        classification.knn_classify(
            train_x, train_y, test_x, test_y, num_classes=NUM_CLASSES, k=len(train_y)
        )
    with pytest.raises(ValueError, match="weighting must be"):
        classification.knn_classify(
            train_x, train_y, test_x, test_y, num_classes=NUM_CLASSES, weighting="distance"
        )
    with pytest.raises(ValueError, match="steps must be >= 1"):
        classification.linear_probe(
            train_x, train_y, test_x, test_y, num_classes=NUM_CLASSES, steps=0
        )
    with pytest.raises(ValueError, match=r"must be \[N, D\] with \[N\] labels"):
        classification.linear_probe(train_x, train_y[:-1], test_x, test_y, num_classes=NUM_CLASSES)
    nan_row = test_x.copy()
    nan_row[np.flatnonzero(test_y >= 0)[0]] = np.nan
    with pytest.raises(ValueError, match="test embeddings contain NaN"):
        classification.linear_probe(train_x, train_y, nan_row, test_y, num_classes=NUM_CLASSES)


@pytest.fixture(scope="module")
def clusters() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Five well-separated Gaussian clusters in 16-D; 7 train and 4 test rows unlabelled."""
    rng = np.random.default_rng(0)
    centres = 6.0 * rng.normal(size=(NUM_CLASSES, 16))

    def split(num_rows, num_unlabelled):
        labels = rng.integers(0, NUM_CLASSES, size=num_rows)
        embeddings = centres[labels] + rng.normal(size=(num_rows, 16))
        labels[rng.choice(num_rows, num_unlabelled, replace=False)] = -1
        return embeddings.astype(np.float32), labels

    return (*split(300, 7), *split(150, 4))
