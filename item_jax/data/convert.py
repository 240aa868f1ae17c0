"""Catalog manifest -> sharded TFRecord files, tokenizer, rejects and dataset_info.json.

`convert_catalog` is the library entry point (`python -m item_jax.cli.convert` is its CLI).
The steps, in order:
  1. Read and validate the manifest (`manifest.read_manifest`); bad lines become rejects.
  2. Assign every listing a split from a seeded hash of its product group key (the
     `group`, or the listing's own id when it has none), so no group spans two splits;
     order each split by a seeded hash of the ids, so shards are mixed.
  3. Decode, resize and re-encode the images in that order across worker processes
     (`image_io`), spooling the JPEGs to a temporary file; bad images become rejects.
  4. Stop with `ConversionError` if the reject fraction exceeds `max_reject_fraction`.
  5. Train the SentencePiece tokenizer on the kept train titles (or, given
     `wordpiece_vocab`, a BERT `vocab.txt`, use WordPiece: `wordpiece.py`); tokenize every
     title.
  6. Write `{split}-{k:05d}-of-{n:05d}.tfrecord` shards of about `shard_size_mb` each,
     `rejects.jsonl`, the tokenizer (`tokenizer.model` or `wordpiece.json`) and
     `dataset_info.json` (docs/design.md).

Everything is written to a staging directory next to `out_dir` and moved into place at
the end, so a failed run leaves the previous output untouched. An existing `out_dir` is
replaced when it holds only converter outputs (re-running needs no flag); one holding
any other file is refused. Same manifest, image files and arguments give byte-identical
shards, tokenizer and dataset_info.json, whatever `num_workers` is.
"""

import collections
import dataclasses
import hashlib
import json
import logging
import math
import multiprocessing
import os
import re
import shutil
import tempfile
from typing import Any, Iterator, Sequence

import numpy as np
import PIL
import sentencepiece
import tqdm

from item_jax.data import image_io
from item_jax.data import manifest
from item_jax.data import shard_integrity
from item_jax.data import tokenizer
from item_jax.data import wordpiece
from item_jax.data.dataset_info import (DATASET_INFO_FILE, DEFAULT_MAX_IMAGE_PIXELS, REJECTS_FILE,
                                        SPLITS, TOKENIZER_FILE, WORDPIECE_FILE)

FORMAT_VERSION = 1

REJECT_REASONS = manifest.MANIFEST_REJECT_REASONS + image_io.IMAGE_REJECT_REASONS
CLEANED_ASPECT_CROPPED = "aspect_cropped"
CLEANED_COUNTERS = (manifest.CLEANED_INVALID_UTF8, manifest.CLEANED_CONTROL_CHARACTERS,
                    CLEANED_ASPECT_CROPPED)

_OUTPUT_FILE_PATTERN = re.compile(
    r"^((train|validation|test)-\d{5}-of-\d{5}\.tfrecord|dataset_info\.json|"
    r"rejects\.jsonl|tokenizer\.model|wordpiece\.json)$")
_SPOOL_FILE = "images.spool"
_EXAMPLE_OVERHEAD_BYTES = 96
_REJECT_EXAMPLES_IN_ERRORS = 5

logger = logging.getLogger(__name__)


class ConversionError(RuntimeError):
  """The catalog as a whole cannot be converted (too many rejects, no titles, ...)."""


@dataclasses.dataclass(frozen=True)
class _KeptListing:
  listing: manifest.Listing
  split: str
  image_offset: int        # Into the spool file; image_length 0 means no image.
  image_length: int
  original_size: tuple[int, int] | None


def convert_catalog(manifest_path: str, out_dir: str, *, image_size: int = 256,
                    vocab_size: int = 8000,
                    split_fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0,
                    num_workers: int | None = None, shard_size_mb: float = 128,
                    allow_empty_titles: bool = False, max_reject_fraction: float = 0.5,
                    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                    wordpiece_vocab: str | None = None,
                    wordpiece_lowercase: bool | None = None,
                    show_progress: bool = True) -> dict[str, Any]:
  """Converts a JSONL/CSV manifest into `out_dir`; returns the dataset_info dict.

  `wordpiece_vocab`: a BERT `vocab.txt`; titles are then WordPiece-tokenized with it
  (`vocab_size` is unused), lower-cased as `wordpiece_lowercase` says (None: as the
  tokenizer_config.json beside it says, else yes).
  """
  split_fractions = tuple(float(fraction) for fraction in split_fractions)
  _check_arguments(image_size, vocab_size, split_fractions, num_workers, shard_size_mb,
                   max_reject_fraction, max_image_pixels)
  converter_args = dict(
      manifest=manifest_path, image_size=image_size, vocab_size=vocab_size,
      split_fractions=list(split_fractions), seed=seed, shard_size_mb=shard_size_mb,
      allow_empty_titles=allow_empty_titles, max_reject_fraction=max_reject_fraction,
      max_image_pixels=max_image_pixels)
  wordpiece_tokenizer = None
  if wordpiece_vocab:
    wordpiece_tokenizer = wordpiece.from_vocab_file(wordpiece_vocab, wordpiece_lowercase)
    converter_args.update(wordpiece_vocab=os.path.abspath(wordpiece_vocab),
                          wordpiece_lowercase=wordpiece_tokenizer.lowercase)
  out_dir = os.path.abspath(out_dir)
  _check_output_dir(out_dir)

  contents = manifest.read_manifest(manifest_path, allow_empty_titles)
  num_input = contents.num_input_listings
  if num_input == 0:
    raise ConversionError(f"Manifest {manifest_path!r} has no listings.")
  _check_reject_fraction(contents.rejects, num_input, max_reject_fraction)
  ordered = order_listings(contents.listings, split_fractions, seed)

  staging_dir = _make_staging_dir(out_dir)
  try:
    spool_path = os.path.join(staging_dir, _SPOOL_FILE)
    kept, image_rejects, aspect_cropped = _store_images(
        ordered, spool_path, image_size, max_image_pixels, num_workers, show_progress)
    rejects = sorted(contents.rejects + image_rejects,
                     key=lambda reject: (reject.line_number, reject.reason))
    _check_reject_fraction(rejects, num_input, max_reject_fraction)
    cleaned = collections.Counter(cleaning for item in kept
                                  for cleaning in item.listing.cleanings)
    cleaned[CLEANED_ASPECT_CROPPED] = aspect_cropped

    if wordpiece_tokenizer is None:
      processor = _train_tokenizer(kept, os.path.join(staging_dir, TOKENIZER_FILE),
                                   vocab_size, seed)
    else:
      processor = wordpiece_tokenizer
      processor.save(os.path.join(staging_dir, WORDPIECE_FILE))
    group_indices = _sorted_index({group_key(item.listing) for item in kept})
    categories = sorted({item.listing.category for item in kept if item.listing.category})
    split_shards = _write_all_shards(kept, spool_path, staging_dir, processor, group_indices,
                                    _sorted_index(categories), shard_size_mb, show_progress)
    os.remove(spool_path)
    _write_rejects(rejects, os.path.join(staging_dir, REJECTS_FILE))
    info = _dataset_info(
        num_input=num_input, kept=kept, rejects=rejects, cleaned=cleaned,
        split_shards=split_shards, num_groups=len(group_indices), categories=categories,
        image_size=image_size, processor=processor, requested_vocab_size=vocab_size,
        converter_args=converter_args, fingerprint=_fingerprint(staging_dir, split_shards))
    _write_json(info, os.path.join(staging_dir, DATASET_INFO_FILE))
    _publish(staging_dir, out_dir)
  except BaseException:
    shutil.rmtree(staging_dir, ignore_errors=True)
    raise
  _warn_about_empty_splits(info, split_fractions)
  return info


def shard_file_name(split: str, index: int, num_shards: int) -> str:
  return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


def group_key(listing: manifest.Listing) -> str:
  """The product group a listing belongs to; one of its own when it has no `group`."""
  return f"group:{listing.group}" if listing.group else f"id:{listing.id}"


def assign_split(key: str, seed: int, split_fractions: Sequence[float]) -> str:
  """Split of a group key: a seeded hash mapped onto the cumulative fractions."""
  position = _unit_hash(f"split|{seed}|{key}")
  cumulative = 0.0
  for split, fraction in zip(SPLITS, split_fractions):
    cumulative += fraction
    if position < cumulative and fraction > 0:
      return split
  return [split for split, fraction in zip(SPLITS, split_fractions) if fraction > 0][-1]


def order_listings(listings: Sequence[manifest.Listing], split_fractions: Sequence[float],
                   seed: int) -> list[tuple[str, manifest.Listing]]:
  """(split, listing) pairs in write order: by split, then by a seeded hash of the id."""
  by_split = {split: [] for split in SPLITS}
  for listing in listings:
    by_split[assign_split(group_key(listing), seed, split_fractions)].append(listing)
  ordered = []
  for split in SPLITS:
    shuffled = sorted(by_split[split],
                      key=lambda listing: (_unit_hash(f"order|{seed}|{listing.id}"),
                                           listing.id))
    ordered.extend((split, listing) for listing in shuffled)
  return ordered


def _unit_hash(text: str) -> float:
  digest = hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).digest()
  return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def _sorted_index(keys) -> dict[str, int]:
  return {key: index for index, key in enumerate(sorted(keys))}


def _check_arguments(image_size, vocab_size, split_fractions, num_workers, shard_size_mb,
                     max_reject_fraction, max_image_pixels) -> None:
  problems = []
  if not isinstance(image_size, int) or image_size < 1:
    problems.append(f"image_size must be a positive integer, got {image_size!r}")
  if vocab_size <= tokenizer.FIRST_WORD_PIECE_ID:
    problems.append(f"vocab_size must exceed {tokenizer.FIRST_WORD_PIECE_ID}, got "
                    f"{vocab_size}")
  if (len(split_fractions) != len(SPLITS) or any(f < 0 for f in split_fractions)
      or not math.isclose(sum(split_fractions), 1.0, abs_tol=1e-6)
      or split_fractions[0] <= 0):
    problems.append("split_fractions must be three non-negative numbers (train, validation, "
                    f"test) summing to 1 with train > 0, got {list(split_fractions)}")
  if num_workers is not None and num_workers < 1:
    problems.append(f"num_workers must be at least 1, got {num_workers}")
  if shard_size_mb <= 0:
    problems.append(f"shard_size_mb must be positive, got {shard_size_mb}")
  if not 0 <= max_reject_fraction <= 1:
    problems.append(f"max_reject_fraction must be in [0, 1], got {max_reject_fraction}")
  if max_image_pixels < 1:
    problems.append(f"max_image_pixels must be positive, got {max_image_pixels}")
  if problems:
    raise ValueError("Invalid converter arguments: " + "; ".join(problems) + ".")


def _check_reject_fraction(rejects: Sequence[manifest.Reject], num_input: int,
                           max_reject_fraction: float) -> None:
  fraction = len(rejects) / num_input
  if fraction <= max_reject_fraction and len(rejects) < num_input:
    return
  by_reason = collections.Counter(reject.reason for reject in rejects)
  reasons = ", ".join(f"{reason}: {count}" for reason, count in by_reason.most_common())
  examples = "\n".join(
      f"  line {reject.line_number} id={reject.id!r}: {reject.reason} ({reject.detail})"
      for reject in rejects[:_REJECT_EXAMPLES_IN_ERRORS])
  if len(rejects) == num_input:
    verdict = f"All {num_input} listings were rejected"
  else:
    verdict = (f"{len(rejects)} of {num_input} listings ({fraction:.0%}) were rejected, "
               f"above the limit of {max_reject_fraction:.0%} (--max_reject_fraction)")
  raise ConversionError(f"{verdict}; no shards written. Rejects by reason: {reasons}. "
                        f"First rejects:\n{examples}")


def _check_output_dir(out_dir: str) -> None:
  if os.path.exists(out_dir) and not os.path.isdir(out_dir):
    raise ConversionError(f"Output {out_dir!r} exists and is not a directory.")
  if not os.path.isdir(out_dir):
    return
  foreign = sorted(name for name in os.listdir(out_dir)
                   if not _OUTPUT_FILE_PATTERN.match(name))
  if foreign:
    raise ConversionError(
        f"Output directory {out_dir!r} holds files the converter did not write "
        f"({', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''}); refusing to "
        "replace it. Choose a new or empty directory, or remove those files.")


def _make_staging_dir(out_dir: str) -> str:
  parent = os.path.dirname(out_dir)
  os.makedirs(parent, exist_ok=True)
  return tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.staging-", dir=parent)


def _publish(staging_dir: str, out_dir: str) -> None:
  """Moves the finished staging directory to `out_dir`, replacing an earlier output."""
  os.chmod(staging_dir, 0o755)
  if not os.path.exists(out_dir):
    os.rename(staging_dir, out_dir)
    return
  previous = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.previous-",
                              dir=os.path.dirname(out_dir))
  os.rmdir(previous)
  os.rename(out_dir, previous)
  os.rename(staging_dir, out_dir)
  shutil.rmtree(previous)


# ----------------------------------------------------------------------------- images


def _store_images(ordered: list[tuple[str, manifest.Listing]], spool_path: str,
                  image_size: int, max_image_pixels: int, num_workers: int | None,
                  show_progress: bool) -> tuple[list[_KeptListing], list[manifest.Reject], int]:
  """Processes every image in write order; returns kept listings, rejects, crop count."""
  tasks = [(listing.image_path, image_size, max_image_pixels)
           for _, listing in ordered if listing.image_path]
  outcomes = _image_outcomes(tasks, num_workers)
  kept, rejects, aspect_cropped = [], [], 0
  with open(spool_path, "wb") as spool, tqdm.tqdm(
      total=len(tasks), unit="image", desc="images", disable=not show_progress,
      smoothing=0.1) as progress:
    for split, listing in ordered:
      if not listing.image_path:
        kept.append(_KeptListing(listing, split, 0, 0, None))
        continue
      outcome = next(outcomes)
      progress.update(1)
      if isinstance(outcome, tuple):
        reason, detail = outcome
        rejects.append(manifest.Reject(listing.line_number, listing.id, reason, detail))
        continue
      offset = spool.tell()
      spool.write(outcome.jpeg)
      aspect_cropped += outcome.aspect_cropped
      kept.append(_KeptListing(listing, split, offset, len(outcome.jpeg),
                               (outcome.original_width, outcome.original_height)))
  return kept, rejects, aspect_cropped


def _image_outcomes(tasks: list[tuple[str, int, int]],
                    num_workers: int | None) -> Iterator[Any]:
  """Yields image_io.image_outcome(task) for each task, in task order."""
  num_workers = num_workers or os.cpu_count() or 1
  num_workers = min(num_workers, max(1, len(tasks)))
  if num_workers == 1:
    yield from map(image_io.image_outcome, tasks)
    return
  chunk_size = max(1, min(32, len(tasks) // (num_workers * 8)))
  # Spawned workers: forking a process that already runs JAX or TF threads can deadlock.
  context = multiprocessing.get_context("spawn")
  with context.Pool(num_workers) as pool:
    yield from pool.imap(image_io.image_outcome, tasks, chunksize=chunk_size)


# ----------------------------------------------------------------------------- text


def _train_tokenizer(kept: Sequence[_KeptListing], model_path: str, vocab_size: int,
                     seed: int):
  train_titles = [item.listing.title for item in kept
                  if item.split == "train" and item.listing.title]
  if not train_titles:
    raise ConversionError(
        "The train split has no titles to train the tokenizer on (a catalog of image-only "
        "listings, or too few product groups for the split fractions).")
  tokenizer.train_tokenizer(train_titles, model_path, vocab_size, seed)
  return tokenizer.load_tokenizer(model_path)


# ----------------------------------------------------------------------------- shards


def _write_all_shards(kept: Sequence[_KeptListing], spool_path: str, staging_dir: str,
                      processor, group_indices: dict[str, int],
                      category_indices: dict[str, int], shard_size_mb: float,
                      show_progress: bool) -> dict[str, list[dict[str, Any]]]:
  """Writes every split's shards; returns split -> the shards' records (name, bytes,
  record count, SHA-256: `shard_integrity.describe_shard`)."""
  import tensorflow as tf  # Deferred: only writing shards needs it.

  split_shards = {}
  with open(spool_path, "rb") as spool, tqdm.tqdm(
      total=len(kept), unit="example", desc="shards", disable=not show_progress) as progress:
    for split in SPLITS:
      items = [item for item in kept if item.split == split]
      tokens = tokenizer.encode_titles(processor, [item.listing.title for item in items])
      sizes = [_estimated_example_bytes(item, item_tokens)
               for item, item_tokens in zip(items, tokens)]
      num_shards = _num_shards(sum(sizes), len(items), shard_size_mb)
      names = [shard_file_name(split, index, num_shards) for index in range(num_shards)]
      bounds = np.linspace(0, len(items), num_shards + 1).round().astype(int)
      for name, start, stop in zip(names, bounds[:-1], bounds[1:]):
        with tf.io.TFRecordWriter(os.path.join(staging_dir, name)) as writer:
          for item, item_tokens in zip(items[start:stop], tokens[start:stop]):
            spool.seek(item.image_offset)
            jpeg = spool.read(item.image_length)
            writer.write(serialize_example(
                item.listing, jpeg, item_tokens, group_indices[group_key(item.listing)],
                category_indices.get(item.listing.category, -1)))
            progress.update(1)
      split_shards[split] = [
          shard_integrity.describe_shard(os.path.join(staging_dir, name), int(stop - start))
          for name, start, stop in zip(names, bounds[:-1], bounds[1:])]
  return split_shards


def _estimated_example_bytes(item: _KeptListing, tokens: Sequence[int]) -> int:
  listing = item.listing
  text_bytes = sum(len(value.encode("utf-8"))
                   for value in (listing.id, listing.title, listing.category, listing.group))
  return item.image_length + text_bytes + 2 * len(tokens) + _EXAMPLE_OVERHEAD_BYTES


def _num_shards(total_bytes: int, num_examples: int, shard_size_mb: float) -> int:
  if num_examples == 0:
    return 0
  wanted = math.ceil(total_bytes / (shard_size_mb * 2 ** 20))
  return int(min(max(1, wanted), num_examples))


def serialize_example(listing: manifest.Listing, jpeg: bytes, title_tokens: Sequence[int],
                      group_index: int, category_index: int) -> bytes:
  """One tf.train.Example in the schema of docs/design.md, serialised deterministically."""
  import tensorflow as tf  # Deferred: only writing shards needs it.

  def bytes_feature(value: bytes):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

  def int_feature(values: Sequence[int]):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))

  features = {
      "id": bytes_feature(listing.id.encode("utf-8")),
      "title": bytes_feature(listing.title.encode("utf-8")),
      "title_tokens": int_feature(title_tokens),
      "image": bytes_feature(jpeg),
      "category": bytes_feature(listing.category.encode("utf-8")),
      "category_index": int_feature([category_index]),
      "group": bytes_feature(listing.group.encode("utf-8")),
      "group_index": int_feature([group_index]),
  }
  example = tf.train.Example(features=tf.train.Features(feature=features))
  return example.SerializeToString(deterministic=True)


# ----------------------------------------------------------------------------- summaries


def _write_rejects(rejects: Sequence[manifest.Reject], path: str) -> None:
  with open(path, "w", encoding="utf-8") as rejects_file:
    for reject in rejects:
      rejects_file.write(json.dumps(reject.to_json_dict()) + "\n")


def _write_json(value: dict[str, Any], path: str) -> None:
  with open(path, "w", encoding="utf-8") as json_file:
    json.dump(value, json_file, indent=2)
    json_file.write("\n")


def _fingerprint(directory: str, split_shards: dict[str, list[dict[str, Any]]]) -> str:
  """SHA-256 over the shards (their recorded digests, in split order) and the tokenizer:
  equal fingerprints, equal data."""
  digest = hashlib.sha256()
  for split in SPLITS:
    for shard in split_shards[split]:
      digest.update(f"{shard['file']}\0{shard['sha256']}\0".encode("utf-8"))
  for name in (TOKENIZER_FILE, WORDPIECE_FILE):
    if os.path.exists(os.path.join(directory, name)):
      digest.update(name.encode("utf-8") + b"\0")
      with open(os.path.join(directory, name), "rb") as tokenizer_file:
        digest.update(tokenizer_file.read())
  return digest.hexdigest()


def _size_stats(values: Sequence[int]) -> dict[str, float] | None:
  if not values:
    return None
  return {"min": int(min(values)), "median": float(np.median(values)),
          "max": int(max(values))}


def _unigram_entropy(token_lists: Sequence[Sequence[int]]) -> float | None:
  counts = collections.Counter(piece for pieces in token_lists for piece in pieces)
  total = sum(counts.values())
  if not total:
    return None
  frequencies = np.array(list(counts.values()), np.float64) / total
  return round(float(-(frequencies * np.log(frequencies)).sum()), 4)


def _dataset_info(*, num_input, kept, rejects, cleaned, split_shards, num_groups, categories,
                  image_size, processor, requested_vocab_size, converter_args,
                  fingerprint) -> dict[str, Any]:
  by_reason = collections.Counter(reject.reason for reject in rejects)
  is_sentencepiece = isinstance(processor, sentencepiece.SentencePieceProcessor)
  sizes = [item.original_size for item in kept if item.original_size]
  splits = {}
  for split in SPLITS:
    items = [item for item in kept if item.split == split]
    splits[split] = {
        "num_examples": len(items),
        "num_groups": len({group_key(item.listing) for item in items}),
        "files": [shard["file"] for shard in split_shards[split]],
        "shards": split_shards[split],
    }
  return {
      "format_version": FORMAT_VERSION,
      "num_input_listings": num_input,
      "num_kept": len(kept),
      "num_rejected": len(rejects),
      "rejected_by_reason": {reason: by_reason[reason] for reason in REJECT_REASONS},
      "cleaned": {counter: cleaned[counter] for counter in CLEANED_COUNTERS},
      "num_with_image": len(sizes),
      "num_without_title": sum(1 for item in kept if not item.listing.title),
      "splits": splits,
      "num_groups": num_groups,
      "categories": categories,
      "image_size": image_size,
      "image_format": "jpeg",
      "original_image_size": {"width": _size_stats([size[0] for size in sizes]),
                              "height": _size_stats([size[1] for size in sizes])},
      "tokenizer": {
          "file": TOKENIZER_FILE if is_sentencepiece else WORDPIECE_FILE,
          "kind": "sentencepiece" if is_sentencepiece else "wordpiece",
          "vocab_size": tokenizer.piece_count(processor),
          # SentencePiece's --vocab_size; a WordPiece vocabulary is the given vocab.txt.
          "requested_vocab_size": requested_vocab_size if is_sentencepiece else None,
          "special_ids": {"pad": tokenizer.PAD_ID, "unk": tokenizer.UNK_ID,
                          "cls": tokenizer.CLS_ID, "sep": tokenizer.SEP_ID,
                          "mask": tokenizer.MASK_ID},
          "first_word_piece_id": tokenizer.FIRST_WORD_PIECE_ID,
          # The input-independent level of MLM: what predicting the train split's piece
          # frequencies costs, in nats a masked piece. A model that learns reads its
          # context and goes well below it.
          "train_piece_unigram_entropy_nats": _unigram_entropy(tokenizer.encode_titles(
              processor, [item.listing.title for item in kept if item.split == "train"])),
      },
      "rejects_file": REJECTS_FILE,
      "converter_args": converter_args,
      "library_versions": {"pillow": PIL.__version__,
                           "sentencepiece": sentencepiece.__version__},
      "fingerprint": fingerprint,
  }


def _warn_about_empty_splits(info: dict[str, Any], split_fractions: Sequence[float]) -> None:
  for split, fraction in zip(SPLITS, split_fractions):
    if fraction > 0 and info["splits"][split]["num_examples"] == 0:
      logger.warning("Split %r is empty although its fraction is %s: the catalog has too "
                     "few product groups.", split, fraction)


def format_summary(info: dict[str, Any], out_dir: str) -> str:
  """Human-readable end-of-run summary: kept, rejects by reason, cleanings, files."""
  lines = [f"Kept {info['num_kept']} of {info['num_input_listings']} listings "
           f"({info['num_rejected']} rejected, {info['num_groups']} product groups, "
           f"{len(info['categories'])} categories)."]
  rejected = {reason: count for reason, count in info["rejected_by_reason"].items() if count}
  if rejected:
    lines.append("Rejected: " + ", ".join(f"{reason} {count}"
                                          for reason, count in rejected.items()))
  cleaned = {counter: count for counter, count in info["cleaned"].items() if count}
  if cleaned:
    lines.append("Cleaned: " + ", ".join(f"{counter} {count}"
                                         for counter, count in cleaned.items()))
  for split in SPLITS:
    split_info = info["splits"][split]
    lines.append(f"  {split}: {split_info['num_examples']} examples, "
                 f"{split_info['num_groups']} groups, {len(split_info['files'])} shards")
  lines.append(f"Tokenizer: {info['tokenizer']['vocab_size']} pieces "
               f"({info['tokenizer']['kind']}).")
  lines.append(f"Files in {out_dir}: shards, {DATASET_INFO_FILE}, {info['tokenizer']['file']}, "
               f"{REJECTS_FILE}.")
  return "\n".join(lines)
