"""Title tokenizers: SentencePiece, trained per catalog, or WordPiece with a BERT vocabulary.

By default the converter trains one SentencePiece model per catalog on the train split's
titles and saves it next to the shards as `tokenizer.model`; with a BERT vocabulary it uses
WordPiece instead (`wordpiece.py`, saved as `wordpiece.json`). The special token ids
(`special_tokens.py`, kept importable from here) are fixed by docs/design.md for both;
`load_tokenizer` refuses a model that does not carry them.
`load_tokenizer`, `encode_titles` and `piece_count` take either kind.
"""

import io
import os
from collections.abc import Iterable, Sequence

import sentencepiece as spm

from item_jax import file_io
from item_jax.data import wordpiece
from item_jax.data.special_tokens import (
    CLS_ID,
    CLS_PIECE,
    FIRST_WORD_PIECE_ID,
    MASK_ID,
    MASK_PIECE,
    PAD_ID,
    PAD_PIECE,
    SEP_ID,
    SEP_PIECE,
    SPECIAL_PIECES,
    UNK_ID,
    UNK_PIECE,
)

# Titles sampled for training; larger catalogs are subsampled (seeded) to bound memory.
MAX_TRAINING_TITLES = 5_000_000


def train_tokenizer(titles: Iterable[str], model_path: str, vocab_size: int, seed: int = 0) -> str:
    """Trains a BPE SentencePiece model on `titles` and writes it to `model_path`.

    `vocab_size` is an upper bound (`hard_vocab_limit=False`): a small catalog yields a
    smaller vocabulary instead of an error. Empty titles are skipped. Returns `model_path`.

    BPE, not unigram: with an upper bound above what a small catalog supports, unigram
    training degenerates to near-characters (the embedded catalog got 427 pieces, "coffee"
    became `co f f ee`, 15 pieces a title), while BPE keeps whole words (1,302 pieces, 9.4 a
    title), so masked words are words. Titles are case-folded with NFKC (`nmt_nfkc_cf`, stored
    in the model, so every encoder of it folds alike): "HARBOR & OAK" and "Harbor & Oak" are
    one brand to a product search (docs/design.md).
    """
    if vocab_size <= FIRST_WORD_PIECE_ID:
        raise ValueError(
            f"vocab_size must be greater than {FIRST_WORD_PIECE_ID} (the special "
            f"ids 0..{MASK_ID}), got {vocab_size}."
        )
    non_empty_titles = [title for title in titles if title.strip()]
    if not non_empty_titles:
        raise ValueError("Cannot train the tokenizer: there are no non-empty titles.")
    spm.set_random_generator_seed(seed)
    model_bytes = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(non_empty_titles),
        model_writer=model_bytes,
        model_type="bpe",
        normalization_rule_name="nmt_nfkc_cf",
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        character_coverage=1.0,
        input_sentence_size=MAX_TRAINING_TITLES,
        shuffle_input_sentence=True,
        pad_id=PAD_ID,
        unk_id=UNK_ID,
        bos_id=CLS_ID,
        eos_id=SEP_ID,
        pad_piece=PAD_PIECE,
        unk_piece=UNK_PIECE,
        bos_piece=CLS_PIECE,
        eos_piece=SEP_PIECE,
        user_defined_symbols=[MASK_PIECE],
        minloglevel=2,
    )
    file_io.makedirs(os.path.dirname(file_io.absolute(model_path)))
    with file_io.open_file(model_path, "wb") as model_file:
        model_file.write(model_bytes.getvalue())
    return model_path


def load_tokenizer(path: str):
    """Loads `tokenizer.model` (SentencePiece) or `wordpiece.json`, checking the special ids."""
    if path.endswith(".json"):
        return wordpiece.load_wordpiece(path)
    if not file_io.isfile(path):
        raise FileNotFoundError(
            f"Tokenizer model {path!r} does not exist; run `python -m item_jax.cli.convert` to "
            "write one next to the shards."
        )
    processor = spm.SentencePieceProcessor()
    try:
        processor.LoadFromSerializedProto(file_io.read_bytes(path))
    except (OSError, RuntimeError) as error:
        raise ValueError(f"{path!r} is not a SentencePiece model: {error}") from error
    check_special_ids(processor, path)
    return processor


def check_special_ids(processor: spm.SentencePieceProcessor, path: str = "model") -> None:
    """Raises ValueError naming every special id the model places differently."""
    problems = []
    if processor.get_piece_size() <= MASK_ID:
        raise ValueError(
            f"Tokenizer {path!r} has only {processor.get_piece_size()} pieces; "
            f"it needs at least the special ids 0..{MASK_ID}."
        )
    for token_id, piece in SPECIAL_PIECES.items():
        found = processor.id_to_piece(token_id)
        if found != piece:
            problems.append(f"id {token_id} is {found!r}, expected {piece!r}")
    role_ids = {
        "pad_id": (processor.pad_id(), PAD_ID),
        "unk_id": (processor.unk_id(), UNK_ID),
        "bos_id": (processor.bos_id(), CLS_ID),
        "eos_id": (processor.eos_id(), SEP_ID),
    }
    for role, (found, expected) in role_ids.items():
        if found != expected:
            problems.append(f"{role} is {found}, expected {expected}")
    if problems:
        raise ValueError(
            f"Tokenizer {path!r} does not use the special ids of docs/design.md: "
            + "; ".join(problems)
            + ". Re-run the converter to train a new one."
        )


def encode_titles(processor, titles: Sequence[str]) -> list[list[int]]:
    """Word-piece ids of each title, without [CLS]/[SEP] and untruncated."""
    if not titles:
        return []
    if not isinstance(processor, spm.SentencePieceProcessor):
        return processor.encode_titles(titles)
    return [list(ids) for ids in processor.encode(list(titles), out_type=int)]


def piece_count(processor) -> int:
    """The tokenizer's vocabulary size (ids 0..piece_count-1)."""
    if isinstance(processor, spm.SentencePieceProcessor):
        return processor.get_piece_size()
    return processor.vocab_size
