"""What a converted catalog directory holds, by name, and its `dataset_info.json`.

The converter (`convert.py`) writes `{split}-k-of-n.tfrecord` shards, the tokenizer
(`tokenizer.model`, or `wordpiece.json` for a BERT vocabulary), `rejects.jsonl` and
`dataset_info.json` (splits, per-shard sizes, record counts and digests, tokenizer, reject
counts; docs/design.md). Everything that reads a converted
catalog (the input pipeline, the trainer's start-up checks, `verify`, export, evaluation)
finds those files through the names and the readers here.
"""

import json
import os
from typing import Any

from etils import epath

from item_jax.errors import ItemJaxError

SPLITS = ("train", "validation", "test")
DATASET_INFO_FILE = "dataset_info.json"
REJECTS_FILE = "rejects.jsonl"
TOKENIZER_FILE = "tokenizer.model"  # SentencePiece (the default).
WORDPIECE_FILE = "wordpiece.json"  # A BERT vocabulary (item_jax/data/wordpiece.py).
TOKENIZER_FILES = (TOKENIZER_FILE, WORDPIECE_FILE)
# Images with more pixels are rejected (decompression bombs), by the converter and by an
# export's loader alike.
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000


class DatasetInfoError(ItemJaxError, ValueError):
    """DIR/dataset_info.json cannot be read as the converter wrote it."""


def load_dataset_info(data_dir: str) -> dict[str, Any]:
    """Reads DIR/dataset_info.json (local or cloud storage, e.g. gs://), with a clear error
    when it is missing or broken."""
    path = epath.Path(data_dir) / DATASET_INFO_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"{data_dir!r} has no {DATASET_INFO_FILE}: it is not a converted catalog. Convert "
            f"one with `python -m item_jax.cli.convert --manifest MANIFEST --out {data_dir}`."
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DatasetInfoError(
            f"{str(path)!r} is not valid JSON ({error}); re-run the converter."
        ) from error


def split_file_paths(data_dir: str, split: str) -> list[str]:
    """Absolute paths of a split's shards, as listed in dataset_info.json."""
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; expected one of {SPLITS}.")
    info = load_dataset_info(data_dir)
    paths = [
        os.path.join(os.path.abspath(data_dir), name) for name in info["splits"][split]["files"]
    ]
    missing = [path for path in paths if not os.path.isfile(path)]
    if missing:
        raise FileNotFoundError(
            f"Shards listed in {DATASET_INFO_FILE} are missing: {missing[:3]}"
            f"{' ...' if len(missing) > 3 else ''}; re-run the converter."
        )
    return paths


def tokenizer_file(info: dict[str, Any]) -> str:
    """The tokenizer's file name in a converted catalog (`dataset_info.json` names it)."""
    return info["tokenizer"].get("file", TOKENIZER_FILE)


def tokenizer_kind(info: dict[str, Any]) -> str:
    """ "sentencepiece" or "wordpiece"."""
    return info["tokenizer"].get("kind", "sentencepiece")
