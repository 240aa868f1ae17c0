"""WordPiece titles with a BERT vocabulary (`vocab.txt`), in item_jax's id order.

  python -m item_jax.cli.convert --manifest M --out D --wordpiece_vocab BERT_DIR/vocab.txt

item_jax numbers its special tokens 0..4 whatever the tokenizer (`special_tokens.py`: `[PAD]`,
`[UNK]`, `[CLS]`, `[SEP]`, `[MASK]`), so masking and packing have one set of ids. A BERT
vocabulary is therefore stored in item_jax order: its five special tokens first, then every
other line of `vocab.txt` in file order. `item_to_bert_ids` is that order (item id -> BERT
id, the line of `vocab.txt`); the importer and the BERT export (`item_jax/interop/bert.py`)
move the embedding rows with it, so a Hugging Face tokenizer's ids work on an export.

Splitting and lower-casing are BERT's, done by the `tokenizers` library (the same code
Hugging Face's BERT tokenizers run). The shard directory keeps `wordpiece.json`: the
vocabulary in BERT order and the lower-casing flag.
"""

import json
import os
from collections.abc import Sequence

import numpy as np

from item_jax import file_io
from item_jax.data import special_tokens

FORMAT = "item_jax.wordpiece/1"
# BERT's names for item_jax's special ids 0..4, in that order.
BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


class WordPieceTokenizer:
    """BERT WordPiece over titles; ids are item_jax's (special tokens at 0..4)."""

    def __init__(self, vocab: Sequence[str], lowercase: bool, source: str = "vocab"):
        from tokenizers import BertWordPieceTokenizer  # pylint: disable=g-import-not-at-top

        self.vocab = list(vocab)  # BERT order: position = BERT id.
        self.lowercase = bool(lowercase)
        self.item_to_bert_ids = item_order(self.vocab, source)
        self.bert_to_item_ids = np.empty_like(self.item_to_bert_ids)
        self.bert_to_item_ids[self.item_to_bert_ids] = np.arange(len(self.vocab))
        self._tokenizer = BertWordPieceTokenizer(
            {token: index for index, token in enumerate(self.vocab)},
            lowercase=self.lowercase,
            unk_token="[UNK]",
            sep_token="[SEP]",
            cls_token="[CLS]",
            pad_token="[PAD]",
            mask_token="[MASK]",
        )

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode_titles(self, titles: Sequence[str]) -> list[list[int]]:
        """item_jax ids of each title's pieces, without [CLS]/[SEP] and untruncated."""
        if not titles:
            return []
        encodings = self._tokenizer.encode_batch(list(titles), add_special_tokens=False)
        return [self.bert_to_item_ids[np.asarray(e.ids, np.int64)].tolist() for e in encodings]

    def save(self, path: str) -> str:
        with file_io.open_file(path, "w") as f:
            json.dump({"format": FORMAT, "lowercase": self.lowercase, "vocab": self.vocab}, f)
        return path


def item_order(vocab: Sequence[str], source: str = "vocab") -> np.ndarray:
    """int64 [V]: the BERT id of each item_jax id (special tokens first, then file order)."""
    positions = {}
    for index, token in enumerate(vocab):
        if token in positions:
            raise ValueError(
                f"{source}: token {token!r} appears twice (lines {positions[token] + 1} "
                f"and {index + 1})."
            )
        positions[token] = index
    missing = [token for token in BERT_SPECIAL_TOKENS if token not in positions]
    if missing:
        raise ValueError(
            f"{source} lacks BERT's special tokens {missing}; item_jax needs "
            f"{list(BERT_SPECIAL_TOKENS)} (its ids {special_tokens.PAD_ID}..."
            f"{special_tokens.MASK_ID})."
        )
    special = [positions[token] for token in BERT_SPECIAL_TOKENS]
    special_set = set(special)
    rest = [index for index in range(len(vocab)) if index not in special_set]
    return np.asarray(special + rest, np.int64)


def read_vocab_file(path: str) -> list[str]:
    """`vocab.txt`: one token a line, the line number (from 0) is the BERT id."""
    if not file_io.isfile(path):
        raise FileNotFoundError(
            f"WordPiece vocabulary {path!r} does not exist (a BERT "
            "checkpoint directory's vocab.txt)."
        )
    with file_io.open_file(path) as f:
        vocab = [line.rstrip("\n").rstrip("\r") for line in f]
    while vocab and not vocab[-1]:
        vocab.pop()
    if not vocab:
        raise ValueError(f"WordPiece vocabulary {path!r} is empty.")
    return vocab


def lowercase_of(vocab_path: str) -> bool:
    """BERT's `do_lower_case` from tokenizer_config.json beside vocab.txt (default True)."""
    config_path = os.path.join(
        os.path.dirname(file_io.absolute(vocab_path)), "tokenizer_config.json"
    )
    if file_io.isfile(config_path):
        with file_io.open_file(config_path) as f:
            return bool(json.load(f).get("do_lower_case", True))
    return True


def from_vocab_file(vocab_path: str, lowercase: bool | None = None) -> WordPieceTokenizer:
    """The tokenizer of a BERT `vocab.txt`; `lowercase` None reads tokenizer_config.json."""
    if lowercase is None:
        lowercase = lowercase_of(vocab_path)
    return WordPieceTokenizer(read_vocab_file(vocab_path), lowercase, source=vocab_path)


def load_wordpiece(path: str) -> WordPieceTokenizer:
    """Reads `wordpiece.json` as the converter wrote it."""
    if not file_io.isfile(path):
        raise FileNotFoundError(
            f"WordPiece tokenizer {path!r} does not exist; the converter "
            "writes it next to the shards."
        )
    try:
        with file_io.open_file(path) as f:
            stored = json.load(f)
    except ValueError as error:
        raise ValueError(f"{path!r} is not a WordPiece tokenizer file: {error}") from error
    if not isinstance(stored, dict) or stored.get("format") != FORMAT:
        raise ValueError(f"{path!r} is not a WordPiece tokenizer file (format {FORMAT!r}).")
    return WordPieceTokenizer(stored["vocab"], stored["lowercase"], source=path)
