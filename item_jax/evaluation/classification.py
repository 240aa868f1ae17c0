"""Category prediction on frozen embeddings: linear probe and k-NN (docs/design.md,
"Evaluation protocol").

- `linear_probe`: multinomial logistic regression, trained full-batch with optax Adam in one
  jitted `lax.scan`, on features standardised with the train rows' mean and std.
- `knn_classify`: cosine k-NN over the train rows (exact top-k from
  `item_jax.evaluation.retrieval.iter_cosine_top_k`), similarity-weighted or majority vote.
- `accuracy`, `macro_f1`: the two reported scores.

Rows labelled -1 (no category) take no part in training or scoring; they are counted in
`num_train_unlabelled` / `num_test_unlabelled`. Any other label outside [0, num_classes) is
an error.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from item_jax.evaluation import retrieval

UNLABELLED = -1
KNN_TEMPERATURE = 0.07


def accuracy(y_true, y_pred) -> float:
    """Fraction of rows where the prediction equals the label."""
    y_true, y_pred = _checked_pair(y_true, y_pred)
    return float(np.mean(y_true == y_pred)) if len(y_true) else float("nan")


def macro_f1(y_true, y_pred, num_classes: int) -> float:
    """Unweighted mean of per-class F1 over the classes present in `y_true`.

    F1_c = 2 TP / (2 TP + FP + FN). A class that is only predicted, never true, is left out of
    the mean (its F1 would be 0 by definition and say nothing about the data); its wrong
    predictions still count, as false negatives of the true classes.
    """
    y_true, y_pred = _checked_pair(y_true, y_pred)
    _check_labels(y_true, num_classes, "y_true", allow_unlabelled=False)
    _check_labels(y_pred, num_classes, "y_pred", allow_unlabelled=False)
    if len(y_true) == 0:
        return float("nan")
    true_count = np.bincount(y_true, minlength=num_classes)
    predicted_count = np.bincount(y_pred, minlength=num_classes)
    true_positive = np.bincount(y_true[y_true == y_pred], minlength=num_classes)
    present = true_count > 0
    f1 = 2 * true_positive[present] / (true_count[present] + predicted_count[present])
    return float(np.mean(f1))


def per_class_accuracy(y_true, y_pred, num_classes: int) -> list[float | None]:
    """Accuracy on each class's true rows; None for a class with no rows (nothing to score)."""
    y_true, y_pred = _checked_pair(y_true, y_pred)
    _check_labels(y_true, num_classes, "y_true", allow_unlabelled=False)
    rows = np.bincount(y_true, minlength=num_classes)
    right = np.bincount(y_true[y_true == y_pred], minlength=num_classes)
    return [float(right[c] / rows[c]) if rows[c] else None for c in range(num_classes)]


def linear_probe(
    train_x,
    train_y,
    test_x,
    test_y,
    *,
    num_classes: int,
    steps: int = 500,
    learning_rate: float = 0.05,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> dict:
    """Trains a softmax classifier on frozen train embeddings and scores it on test.

    Args:
      train_x, test_x: [N, D] embeddings.
      train_y, test_y: [N] category indices, -1 for unknown.
      num_classes: number of categories.
      steps: full-batch Adam steps.
      learning_rate: Adam learning rate.
      weight_decay: L2 penalty (weight_decay / 2) * ||W||^2 added to the mean cross-entropy.
      seed: draws the initial weights (normal, std 0.01).

    Returns:
      {"top1_accuracy", "macro_f1", "per_class_accuracy" (one per category, None where the
       test split has none; which categories the embedding fails on), "train_accuracy",
       "final_train_loss", "num_train", "num_test", "num_train_unlabelled",
       "num_test_unlabelled"}.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    train_x, train_y, train_unlabelled = _labelled_rows(train_x, train_y, num_classes, "train")
    test_x, test_y, test_unlabelled = _labelled_rows(test_x, test_y, num_classes, "test")
    _check_same_width(train_x, test_x)
    mean = train_x.mean(axis=0)
    std = np.maximum(train_x.std(axis=0), 1e-6)
    train_features = ((train_x - mean) / std).astype(np.float32)
    test_features = ((test_x - mean) / std).astype(np.float32)

    params, final_loss = _train_softmax(
        jnp.asarray(train_features),
        jnp.asarray(train_y, jnp.int32),
        jax.random.PRNGKey(seed),
        num_classes=num_classes,
        steps=steps,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
    )
    train_pred = _softmax_predict(params, train_features)
    test_pred = _softmax_predict(params, test_features)
    return {
        "top1_accuracy": accuracy(test_y, test_pred),
        "macro_f1": macro_f1(test_y, test_pred, num_classes),
        "per_class_accuracy": per_class_accuracy(test_y, test_pred, num_classes),
        "train_accuracy": accuracy(train_y, train_pred),
        "final_train_loss": float(final_loss),
        "num_train": len(train_y),
        "num_test": len(test_y),
        "num_train_unlabelled": train_unlabelled,
        "num_test_unlabelled": test_unlabelled,
    }


def knn_classify(
    train_x,
    train_y,
    test_x,
    test_y,
    *,
    num_classes: int,
    k: int = 10,
    weighting: str = "similarity",
    chunk_size: int = 4096,
) -> dict:
    """Cosine k-NN: each test row takes the vote of its k most similar train rows.

    Votes: "similarity" weights a neighbour by exp(cosine / 0.07) (the k-NN protocol of
    Wu et al. 2018, used by DINO); "majority" counts neighbours. Neighbours tied on score come
    in lower train-row order; classes tied on votes go to the class of the nearer neighbour.

    Returns:
      {"top1_accuracy", "macro_f1", "k", "num_train", "num_test", "num_train_unlabelled",
       "num_test_unlabelled"}.
    """
    if weighting not in ("similarity", "majority"):
        raise ValueError(f"weighting must be 'similarity' or 'majority', got {weighting!r}")
    train_x, train_y, train_unlabelled = _labelled_rows(train_x, train_y, num_classes, "train")
    test_x, test_y, test_unlabelled = _labelled_rows(test_x, test_y, num_classes, "test")
    _check_same_width(train_x, test_x)
    if not 1 <= k <= len(train_y):
        raise ValueError(f"k must be in [1, {len(train_y)}] (labelled train rows), got {k}")
    test_pred = np.zeros(len(test_y), np.int64)
    for start, scores, indices in retrieval.iter_cosine_top_k(
        test_x, train_x, k=k, chunk_size=chunk_size
    ):
        votes = (
            np.exp(scores.astype(np.float64) / KNN_TEMPERATURE)
            if weighting == "similarity"
            else np.ones(scores.shape)
        )
        test_pred[start : start + len(scores)] = _vote(train_y[indices], votes, num_classes)
    return {
        "top1_accuracy": accuracy(test_y, test_pred),
        "macro_f1": macro_f1(test_y, test_pred, num_classes),
        "k": k,
        "num_train": len(train_y),
        "num_test": len(test_y),
        "num_train_unlabelled": train_unlabelled,
        "num_test_unlabelled": test_unlabelled,
    }


def _vote(neighbour_labels: np.ndarray, weights: np.ndarray, num_classes: int) -> np.ndarray:
    """[c, k] labels (nearest first) and vote weights -> [c] winning class."""
    rows, k = neighbour_labels.shape
    totals = np.zeros((rows, num_classes))
    np.add.at(totals, (np.arange(rows)[:, None], neighbour_labels), weights)
    nearest_rank = np.full((rows, num_classes), k)
    for rank in range(k - 1, -1, -1):
        nearest_rank[np.arange(rows), neighbour_labels[:, rank]] = rank
    tied_best = totals == totals.max(axis=1, keepdims=True)
    return np.argmin(np.where(tied_best, nearest_rank, k + 1), axis=1)


@functools.partial(
    jax.jit, static_argnames=("num_classes", "steps", "learning_rate", "weight_decay")
)
def _train_softmax(features, labels, key, *, num_classes, steps, learning_rate, weight_decay):
    params = {
        "kernel": 0.01 * jax.random.normal(key, (features.shape[1], num_classes)),
        "bias": jnp.zeros((num_classes,)),
    }
    optimizer = optax.adam(learning_rate)

    def loss_fn(params):
        logits = features @ params["kernel"] + params["bias"]
        cross_entropy = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return cross_entropy + 0.5 * weight_decay * jnp.sum(params["kernel"] ** 2)

    def step(state, _):
        params, opt_state = state
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)), length=steps)
    return params, losses[-1]


def _softmax_predict(params, features: np.ndarray) -> np.ndarray:
    logits = np.asarray(features) @ np.asarray(params["kernel"]) + np.asarray(params["bias"])
    return np.argmax(logits, axis=1)


def _labelled_rows(x, y, num_classes: int, split: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Drops rows labelled -1; returns (x, y, how many were dropped)."""
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 2 or y.shape != (len(x),):
        raise ValueError(
            f"{split} embeddings must be [N, D] with [N] labels, got {x.shape} and {y.shape}"
        )
    _check_labels(y, num_classes, f"{split} labels", allow_unlabelled=True)
    labelled = y != UNLABELLED
    if not labelled.any():
        raise ValueError(f"{split} split has no labelled rows (all {len(y)} are -1)")
    if not np.isfinite(x[labelled]).all():
        raise ValueError(f"{split} embeddings contain NaN or infinity")
    return x[labelled].astype(np.float64), y[labelled].astype(np.int64), int(np.sum(~labelled))


def _check_labels(y: np.ndarray, num_classes: int, name: str, *, allow_unlabelled: bool):
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if len(y) and not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} must be integers, got dtype {y.dtype}")
    low = UNLABELLED if allow_unlabelled else 0
    bad = (y < low) | (y >= num_classes)
    if bad.any():
        raise ValueError(
            f"{name} hold {int(bad.sum())} values outside [{low}, {num_classes}), "
            f"e.g. {y[np.argmax(bad)]} at row {int(np.argmax(bad))}"
        )


def _checked_pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.ndim != 1 or y_true.shape != y_pred.shape:
        raise ValueError(
            f"y_true and y_pred must be 1-D of equal length, got {y_true.shape} and {y_pred.shape}"
        )
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if len(y) and not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"{name} must be integers, got dtype {y.dtype}")
    return y_true.astype(np.int64), y_pred.astype(np.int64)


def _check_same_width(train_x: np.ndarray, test_x: np.ndarray):
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(
            f"train and test embeddings differ in width: {train_x.shape[1]} vs {test_x.shape[1]}"
        )
