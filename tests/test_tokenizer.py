"""Tests for item_jax.data.tokenizer: special ids, round trips, determinism, bad models."""

import io

import pytest
import sentencepiece as spm

from item_jax.data import tokenizer

TITLES = [
    "red cotton shirt size m",
    "blue denim jeans slim fit",
    "stainless steel coffee mug 350ml",
    "wireless optical mouse black",
    "ceramic tea cup with saucer",
    "leather wallet brown bifold",
    "running shoes men size 42",
    "kitchen knife set stainless steel",
] * 4


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tokenizer") / "tokenizer.model")
    return tokenizer.train_tokenizer(TITLES, path, vocab_size=8000, seed=0)


def test_model_has_the_design_special_ids(model_path):
    processor = tokenizer.load_tokenizer(model_path)

    pieces = [processor.id_to_piece(token_id) for token_id in range(5)]
    assert pieces == ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]
    assert (processor.pad_id(), processor.unk_id(), processor.bos_id(), processor.eos_id()) == (
        tokenizer.PAD_ID,
        tokenizer.UNK_ID,
        tokenizer.CLS_ID,
        tokenizer.SEP_ID,
    )
    assert processor.piece_to_id("[MASK]") == tokenizer.MASK_ID
    assert tokenizer.FIRST_WORD_PIECE_ID == 5


def test_small_catalog_gets_a_smaller_vocabulary(model_path):
    processor = tokenizer.load_tokenizer(model_path)
    assert tokenizer.FIRST_WORD_PIECE_ID < processor.get_piece_size() < 8000


def test_encode_titles_round_trips_without_cls_or_sep(model_path):
    processor = tokenizer.load_tokenizer(model_path)
    titles = ["red cotton shirt size m", "", "steel mug black"]

    encoded = tokenizer.encode_titles(processor, titles)

    assert encoded[1] == []
    for title, ids in zip(titles, encoded):
        assert all(token_id >= tokenizer.FIRST_WORD_PIECE_ID for token_id in ids)
        assert processor.decode(ids) == title
    assert tokenizer.encode_titles(processor, []) == []


def test_training_is_deterministic(tmp_path, model_path):
    again = tokenizer.train_tokenizer(TITLES, str(tmp_path / "again.model"), 8000, seed=0)
    with open(model_path, "rb") as first, open(again, "rb") as second:
        assert first.read() == second.read()


def test_model_with_other_special_ids_is_refused(tmp_path):
    path = tmp_path / "default_ids.model"
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(TITLES),
        model_writer=model,
        vocab_size=40,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    path.write_bytes(model.getvalue())

    with pytest.raises(ValueError, match="special ids"):
        tokenizer.load_tokenizer(str(path))


def test_missing_or_broken_model_files_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tokenizer.load_tokenizer(str(tmp_path / "absent.model"))
    broken = tmp_path / "broken.model"
    broken.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a SentencePiece model"):
        tokenizer.load_tokenizer(str(broken))


def test_training_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match="no non-empty titles"):
        tokenizer.train_tokenizer(["", "  "], str(tmp_path / "t.model"), 100)
    with pytest.raises(ValueError, match="vocab_size"):
        tokenizer.train_tokenizer(TITLES, str(tmp_path / "t.model"), 5)


def test_split_punctuation_is_kept_in_the_model_and_off_by_default(tmp_path):
    titles = ["father christmas (santa)", "santa emoji", "coffee cup (Porcelain, 12 oz)"] * 8
    path = tokenizer.train_tokenizer(
        titles, str(tmp_path / "t.model"), 8000, split_punctuation=True
    )
    # A bare SentencePiece processor, without item_jax's code: the rule is in the model.
    processor = spm.SentencePieceProcessor(model_file=path)

    def pieces(title):
        return processor.encode(title, out_type=str)

    assert pieces("(santa)") == ["▁(", "▁santa", "▁)"]
    assert pieces("santa emoji")[0] == "▁santa"
    assert pieces("cup (Porcelain, 12 oz)") == [
        "▁cup", "▁(", "▁porcelain", "▁,", "▁12", "▁oz", "▁)"
    ]  # fmt: skip
    # Still NFKC with case folding: full-width and upper-case letters are the same word.
    assert pieces("ＳＡＮＴＡ") == pieces("Santa") == ["▁santa"]

    # Off by default: a word after "(" is another piece, as in models trained before.
    plain = spm.SentencePieceProcessor(
        model_file=tokenizer.train_tokenizer(titles, str(tmp_path / "plain.model"), 8000)
    )
    assert plain.encode("(santa)", out_type=str) == ["▁(", "santa", ")"]


def test_punctuation_is_bert_s():
    assert all(map(tokenizer.is_punctuation, "()[],.:;!?'\"-&#%+$/«»、。"))
    assert not any(map(tokenizer.is_punctuation, "aZ09 éß½\t"))
