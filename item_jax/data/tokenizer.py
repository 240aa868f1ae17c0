"""Title tokenizers: SentencePiece, trained per catalog, or WordPiece with a BERT vocabulary.

By default the converter trains one SentencePiece model per catalog on the train split's
titles and saves it next to the shards as `tokenizer.model`, its title normalisation
(`nmt_nfkc_cf`, or with `split_punctuation` also `normalization_rules`) compiled into it;
with a BERT vocabulary it uses WordPiece instead (`wordpiece.py`, saved as
`wordpiece.json`). The special token ids (`special_tokens.py`, kept importable from here)
are fixed by docs/design.md for both; `load_tokenizer` refuses a model that does not carry
them.
`load_tokenizer`, `encode_titles` and `piece_count` take either kind.
"""

import io
import os
import tempfile
import unicodedata
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
# SentencePiece's built-in rule set for titles (and the start of `normalization_rules`): NFKC
# with case folding.
BASE_NORMALIZATION = "nmt_nfkc_cf"
# The largest Unicode code point; surrogates (U+D800..U+DFFF) are not characters.
_MAX_CODE_POINT = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)


def is_punctuation(char: str) -> bool:
    """BERT's punctuation: every ASCII character that is neither a letter, a digit nor a space
    (so `&`, `#`, `%`, `+` and `$` too), and every Unicode punctuation character (category P)."""
    code = ord(char)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def normalization_rules() -> list[tuple[str, str]]:
    """(character, replacement) for every character that `split_punctuation` changes.

    Each character maps to what `BASE_NORMALIZATION` makes of it, and each punctuation
    character to that with a space on either side, as BERT's basic tokenizer splits titles
    before WordPiece. Without the spaces a word glued to punctuation is another piece:
    "(santa)" is encoded as `▁( santa )`, not the `▁santa` of "santa emoji"; the model then
    has to learn that the two pieces are one word, which title TF-IDF, reading words, never
    has to. It lifts the emoji set and costs the embedded catalog (docs/experiments.md,
    section 17). The table is per character: titles reach the tokenizer NFC-composed
    (`manifest.clean_text`), so the base rules' multi-character sequences (decomposed
    accents) do not occur in them.
    """
    base = spm.SentencePieceNormalizer(
        rule_name=BASE_NORMALIZATION,
        add_dummy_prefix=False,
        escape_whitespaces=False,
        remove_extra_whitespaces=False,
    )
    chars = [chr(code) for code in range(_MAX_CODE_POINT + 1) if code not in _SURROGATES]
    rules = []
    for char, normalized in zip(chars, base.normalize(chars)):
        if is_punctuation(char):
            normalized = f" {normalized} "
        if normalized != char:
            rules.append((char, normalized))
    return rules


def _rules_file() -> str:
    """`normalization_rules` as SentencePiece's rule file (source and target as hex code
    points), written afresh for each training.

    SentencePiece records the file's path in the model it trains (for information; the
    rules themselves are compiled into it), so the path is the same for every training on
    a machine: a fixed name in a per-user folder of the temporary directory. Processes that
    train at once each write their own copy and move it into place; the copies are equal.
    """
    folder = os.path.join(tempfile.gettempdir(), f"item_jax_tokenizer_{os.getuid()}")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "title_normalization.tsv")
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=folder, suffix=".tsv", delete=False
    ) as rules_file:
        for source, target in normalization_rules():
            rules_file.write(f"{_hex_code_points(source)}\t{_hex_code_points(target)}\n")
    os.replace(rules_file.name, path)
    return path


def _hex_code_points(text: str) -> str:
    return " ".join(f"{ord(char):X}" for char in text)


def train_tokenizer(
    titles: Iterable[str],
    model_path: str,
    vocab_size: int,
    seed: int = 0,
    split_punctuation: bool = False,
) -> str:
    """Trains a BPE SentencePiece model on `titles` and writes it to `model_path`.

    `vocab_size` is an upper bound (`hard_vocab_limit=False`): a small catalog yields a
    smaller vocabulary instead of an error. Empty titles are skipped. Returns `model_path`.

    BPE, not unigram: with an upper bound above what a small catalog supports, unigram
    training degenerates to near-characters (the embedded catalog got 427 pieces, "coffee"
    became `co f f ee`, 15 pieces a title), while BPE keeps whole words (1,302 pieces, 9.4 a
    title), so masked words are words. Titles are normalised with NFKC and case folding
    (`BASE_NORMALIZATION`): "HARBOR & OAK" and "Harbor & Oak" are one brand to a product
    search. `split_punctuation` adds a space on either side of every punctuation character
    (`normalization_rules`). The normalisation is stored in the model, so every encoder of
    it (the converter, export, embed, search) normalises alike (docs/design.md).
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
    normalization = (
        dict(normalization_rule_tsv=_rules_file())
        if split_punctuation
        else dict(normalization_rule_name=BASE_NORMALIZATION)
    )
    _train_sentencepiece(non_empty_titles, model_bytes, normalization, vocab_size)
    file_io.makedirs(os.path.dirname(file_io.absolute(model_path)))
    with file_io.open_file(model_path, "wb") as model_file:
        model_file.write(model_bytes.getvalue())
    return model_path


def _train_sentencepiece(titles, model_bytes, normalization: dict, vocab_size: int) -> None:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(titles),
        model_writer=model_bytes,
        model_type="bpe",
        **normalization,
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
