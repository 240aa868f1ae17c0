"""ITM on a fixed draw of pairs: the partners, and what a seeing and a blind head score."""

import numpy as np
import pytest

from item_jax.evaluation import matching


def _batch(groups, images, valid=None, has_title=None):
    rows = len(groups)
    ones = np.ones((rows,), np.int32)
    return dict(
        text_tokens=np.asarray(groups, np.int32)[:, None].repeat(4, axis=1),
        text_mask=np.ones((rows, 4), np.int32),
        image=np.asarray(images, np.float32),
        has_image=ones,
        has_title=ones if has_title is None else np.asarray(has_title),
        group_index=np.asarray(groups, np.int32),
        valid=ones if valid is None else np.asarray(valid),
    )


def test_partners_are_of_another_group_and_fixed_by_the_seed():
    groups = np.array([0, 0, 1, 1, 2, 2, 2, 3])
    partners = matching.draw_partners(groups, seed=3)
    assert np.all(groups[partners] != groups)
    np.testing.assert_array_equal(partners, matching.draw_partners(groups, seed=3))
    assert not np.array_equal(partners, matching.draw_partners(groups, seed=4))
    np.testing.assert_array_equal(matching.draw_partners(np.array([5, 5])), [-1, -1])


def test_a_head_that_sees_scores_one_and_a_blind_head_one_half():
    groups = [0, 0, 1, 2, 3, 4, 5, 6]
    # Each photo is filled with its group's number; the "title" token says the group too.
    images = np.stack([np.full((2, 2, 3), g, np.float32) for g in groups])
    source = matching.PairSource()
    source.add(_batch(groups[:5], images[:5]))
    source.add(_batch(groups[5:], images[5:]))

    def seeing(inputs):
        same = inputs["image"][:, 0, 0, 0] == inputs["text_tokens"][:, 0]
        return np.stack([~same, same], axis=-1).astype(np.float32)

    def blind(inputs):
        return np.tile([[0.0, 1.0]], (len(inputs["image"]), 1))

    seen = matching.itm_accuracy(seeing, source, batch_size=3)
    assert seen == dict(accuracy=1.0, matched_accuracy=1.0, mismatched_accuracy=1.0, num_pairs=16)
    unseen = matching.itm_accuracy(blind, source)
    assert unseen["accuracy"] == 0.5 and unseen["matched_accuracy"] == 1.0
    assert unseen["mismatched_accuracy"] == 0.0


def test_the_source_keeps_rows_with_both_modalities_up_to_its_cap():
    source = matching.PairSource(max_listings=3)
    images = np.zeros((4, 2, 2, 3))
    source.add(_batch([0, 1, 2, 3], images, valid=[1, 0, 1, 1], has_title=[1, 1, 0, 1]))
    assert len(source) == 2
    source.add(_batch([4, 5], images[:2]))
    assert len(source) == 3
    np.testing.assert_array_equal(source.listings()["group_index"], [0, 3, 4])
    with pytest.raises(ValueError, match="max_listings"):
        matching.PairSource(max_listings=1)


def test_no_pairs_gives_nan_not_a_score():
    source = matching.PairSource()
    source.add(_batch([7, 7], np.zeros((2, 2, 2, 3))))
    result = matching.itm_accuracy(lambda inputs: np.zeros((len(inputs["image"]), 2)), source)
    assert result["num_pairs"] == 0 and np.isnan(result["accuracy"])
