"""Catalog manifest -> sharded TFRecord files, tokenizer, rejects and dataset_info.json.

`convert_catalog` is the library entry point (`python -m item_jax.cli.convert` is its CLI).
The work is one Apache Beam pipeline (`beam_pipeline.py`): on one machine it runs on
Beam's DirectRunner (worker processes when `num_workers` > 1), on a cluster on the runner
`runner` names (DataflowRunner, FlinkRunner, SparkRunner) with Beam's own pipeline options
in `pipeline_args` (docs/convert.md). The pipeline:
  1. reads and validates the manifest (`manifest.read_claims`); bad lines become rejects,
     and duplicate ids are found by a group-by on the id (the first line keeps it);
  2. assigns every listing a split from a seeded hash of its product group key (the
     `group`, or the listing's own id when it has none), so no group spans two splits, and
     orders each split by a seeded hash of the ids, so shards are mixed;
  3. decodes, resizes and re-encodes the images (`image_io`); bad images become rejects;
  4. trains the SentencePiece tokenizer on at most `tokenizer.MAX_TRAINING_TITLES` train
     titles (those first in write order), or, given `wordpiece_vocab` (a BERT `vocab.txt`),
     uses WordPiece (`wordpiece.py`); tokenizes every title;
  5. writes `{split}-{k:05d}-of-{n:05d}.tfrecord` shards of about `shard_size_mb` each
     (shard k is the k-th range of the split's hash order) and the rejects.
Then this driver stops with `ConversionError` if the reject fraction exceeds
`max_reject_fraction`, names the shards and writes `rejects.jsonl`, the tokenizer
(`tokenizer.model` or `wordpiece.json`) and `dataset_info.json` (docs/design.md).

Everything is written to a staging directory next to `out_dir` and moved into place at
the end, so a failed run leaves the previous output untouched. An existing `out_dir` is
replaced when it holds only converter outputs (re-running needs no flag); one holding
any other file is refused. Same manifest, image files and arguments give byte-identical
shards, tokenizer and dataset_info.json, whatever the runner and `num_workers` are.
"""

import collections
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import PIL
import sentencepiece
from absl import logging

from item_jax import file_io
from item_jax.data import beam_pipeline, image_io, manifest, shard_integrity, tokenizer, wordpiece
from item_jax.data.dataset_info import (
    DATASET_INFO_FILE,
    DEFAULT_MAX_IMAGE_PIXELS,
    REJECTS_FILE,
    SPLITS,
    TOKENIZER_FILE,
    WORDPIECE_FILE,
)
from item_jax.errors import ItemJaxError

FORMAT_VERSION = 1

REJECT_REASONS = manifest.MANIFEST_REJECT_REASONS + image_io.IMAGE_REJECT_REASONS
CLEANED_ASPECT_CROPPED = "aspect_cropped"
CLEANED_COUNTERS = (
    manifest.CLEANED_INVALID_UTF8,
    manifest.CLEANED_CONTROL_CHARACTERS,
    CLEANED_ASPECT_CROPPED,
)

_OUTPUT_FILE_PATTERN = re.compile(
    r"^((train|validation|test)-\d{5}-of-\d{5}\.tfrecord|dataset_info\.json|"
    r"rejects\.jsonl|tokenizer\.model|wordpiece\.json)$"
)
_REJECT_EXAMPLES_IN_ERRORS = 5


class ConversionError(ItemJaxError, RuntimeError):
    """The catalog as a whole cannot be converted (too many rejects, no titles, ...)."""


def convert_catalog(
    manifest_path: str,
    out_dir: str,
    *,
    image_size: int = 256,
    vocab_size: int = 8000,
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    num_workers: int | None = None,
    shard_size_mb: float = 128,
    allow_empty_titles: bool = False,
    max_reject_fraction: float = 0.5,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    wordpiece_vocab: str | None = None,
    wordpiece_lowercase: bool | None = None,
    split_punctuation: bool = False,
    runner: str = "DirectRunner",
    pipeline_args: Sequence[str] = (),
    show_progress: bool = True,
) -> dict[str, Any]:
    """Converts a JSONL/CSV manifest into `out_dir`; returns the dataset_info dict.

    `wordpiece_vocab`: a BERT `vocab.txt`; titles are then WordPiece-tokenized with it
    (`vocab_size` is unused), lower-cased as `wordpiece_lowercase` says (None: as the
    tokenizer_config.json beside it says, else yes). `split_punctuation`: the SentencePiece
    tokenizer puts a space on either side of every punctuation character before cutting
    a title into pieces (`tokenizer.normalization_rules`; WordPiece always does).
    `num_workers`: DirectRunner worker processes (default: all CPUs); other runners size
    themselves from `pipeline_args`.
    `show_progress`: log the pipeline's start and end with its throughput.
    """
    split_fractions = tuple(float(fraction) for fraction in split_fractions)
    _check_arguments(
        image_size,
        vocab_size,
        split_fractions,
        num_workers,
        shard_size_mb,
        max_reject_fraction,
        max_image_pixels,
    )
    if split_punctuation and wordpiece_vocab:
        raise ValueError(
            "split_punctuation applies to the SentencePiece tokenizer that the converter "
            "trains; WordPiece (wordpiece_vocab) always splits punctuation from words."
        )
    converter_args = dict(
        manifest=manifest_path,
        image_size=image_size,
        vocab_size=vocab_size,
        split_fractions=list(split_fractions),
        seed=seed,
        shard_size_mb=shard_size_mb,
        allow_empty_titles=allow_empty_titles,
        max_reject_fraction=max_reject_fraction,
        max_image_pixels=max_image_pixels,
        split_punctuation=split_punctuation,
    )
    wordpiece_tokenizer = None
    if wordpiece_vocab:
        wordpiece_tokenizer = wordpiece.from_vocab_file(wordpiece_vocab, wordpiece_lowercase)
        converter_args.update(
            wordpiece_vocab=file_io.absolute(wordpiece_vocab),
            wordpiece_lowercase=wordpiece_tokenizer.lowercase,
        )
    out_dir = file_io.absolute(out_dir)
    _check_output_dir(out_dir)
    manifest.check_manifest(manifest_path)

    staging_dir = _make_staging_dir(out_dir)
    try:
        settings = beam_pipeline.Settings(
            manifest_path=file_io.absolute(manifest_path),
            staging_dir=staging_dir,
            image_size=image_size,
            max_image_pixels=max_image_pixels,
            seed=seed,
            split_fractions=split_fractions,
            allow_empty_titles=allow_empty_titles,
            vocab_size=vocab_size,
            shard_size_mb=shard_size_mb,
            wordpiece_vocab=tuple(wordpiece_tokenizer.vocab) if wordpiece_tokenizer else None,
            wordpiece_lowercase=wordpiece_tokenizer.lowercase if wordpiece_tokenizer else True,
            split_punctuation=split_punctuation,
        )
        _run_pipeline(settings, runner, num_workers, pipeline_args, show_progress)
        results = beam_pipeline.read_results(settings)
        summary, rejects = results["summary"], results["rejects"]
        num_input = summary["num_input"]
        if num_input == 0:
            raise ConversionError(f"Manifest {manifest_path!r} has no listings.")
        _check_reject_fraction(rejects, num_input, max_reject_fraction)
        if wordpiece_tokenizer is None:
            if not file_io.exists(os.path.join(staging_dir, TOKENIZER_FILE)):
                raise ConversionError(
                    "The train split has no titles to train the tokenizer on (a catalog of "
                    "image-only listings, or too few product groups for the split fractions)."
                )
            processor = tokenizer.load_tokenizer(os.path.join(staging_dir, TOKENIZER_FILE))
        else:
            processor = wordpiece_tokenizer
            processor.save(os.path.join(staging_dir, WORDPIECE_FILE))
        split_shards = _name_shards(results["shards"], staging_dir)
        file_io.move_file(
            os.path.join(settings.work_dir, beam_pipeline.REJECTS_PART),
            os.path.join(staging_dir, REJECTS_FILE),
        )
        file_io.remove_tree(settings.work_dir)
        info = _dataset_info(
            num_input=num_input,
            summary=summary,
            rejects=rejects,
            split_shards=split_shards,
            image_size=image_size,
            processor=processor,
            requested_vocab_size=vocab_size,
            converter_args=converter_args,
            fingerprint=_fingerprint(staging_dir, split_shards),
        )
        _write_json(info, os.path.join(staging_dir, DATASET_INFO_FILE))
        _publish(staging_dir, out_dir)
    except BaseException:
        file_io.remove_tree(staging_dir)
        raise
    _warn_about_empty_splits(info, split_fractions)
    return info


def pipeline_options(runner: str, num_workers: int | None, pipeline_args: Sequence[str] = ()):
    """Beam's options for a conversion: `runner` with `pipeline_args`; on the DirectRunner,
    `num_workers` processes (1: in this process)."""
    from apache_beam.options import pipeline_options as options  # pylint: disable=g-import-not-at-top

    # Beam's worker processes log every bundle at INFO; the user's options come last and win.
    args = ["--runner", runner, "--default_sdk_harness_log_level", "WARNING", *pipeline_args]
    if runner == "DirectRunner":
        num_workers = num_workers or os.cpu_count() or 1
        if num_workers == 1:
            args += ["--direct_running_mode", "in_memory"]
        else:
            args += [
                "--direct_running_mode",
                "multi_processing",
                "--direct_num_workers",
                str(num_workers),
            ]
    return options.PipelineOptions(args)


def plan(
    manifest_path: str,
    out_dir: str,
    *,
    runner: str = "DirectRunner",
    num_workers: int | None = None,
    pipeline_args: Sequence[str] = (),
) -> dict[str, Any]:
    """What a conversion would run, without running it: the runner, Beam's options as a
    command line, and the pipeline's stages. Beam validates the options for the runner
    (a DataflowRunner needs --project, --region and a gs:// --temp_location)."""
    import apache_beam as beam  # pylint: disable=g-import-not-at-top

    options = pipeline_options(runner, num_workers, pipeline_args)
    pipeline = beam.Pipeline(options=options)
    beam_pipeline.build_pipeline(
        pipeline,
        beam_pipeline.Settings(
            manifest_path=file_io.absolute(manifest_path),
            staging_dir=file_io.absolute(out_dir) + ".staging",
            image_size=256,
            max_image_pixels=DEFAULT_MAX_IMAGE_PIXELS,
            seed=0,
            split_fractions=(0.8, 0.1, 0.1),
            allow_empty_titles=False,
            vocab_size=8000,
            shard_size_mb=128,
        ),
        files=[manifest_path],
    )  # The stages do not depend on how many files a glob names.
    flags = [
        f"--{name}={value}"
        for name, value in options.get_all_options(
            drop_default=True, retain_unknown_options=True
        ).items()
    ]
    return {
        "runner": runner,
        "pipeline_options": " ".join(flags),
        "stages": [part.full_label for part in pipeline.transforms_stack[0].parts],
    }


def _run_pipeline(settings, runner, num_workers, pipeline_args, show_progress) -> None:
    import apache_beam as beam  # pylint: disable=g-import-not-at-top

    options = pipeline_options(runner, num_workers, pipeline_args)
    # DirectRunner worker processes import item_jax from wherever this process did.
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    paths = [package_root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    started = time.time()
    if show_progress:
        logging.info(
            "Converting %s on %s%s",
            settings.manifest_path,
            runner,
            f" ({num_workers or os.cpu_count()} workers)" if runner == "DirectRunner" else "",
        )
    with beam.Pipeline(options=options) as pipeline:
        beam_pipeline.build_pipeline(pipeline, settings)
    if show_progress:
        logging.info("Pipeline done in %.1f s", time.time() - started)


def _name_shards(
    shards: dict[str, list[dict[str, Any]]], staging_dir: str
) -> dict[str, list[dict[str, Any]]]:
    """Moves each split's written shards, in bucket order, to their final names; returns
    split -> the shards' records (`shard_integrity.describe_shard`)."""
    split_shards = {}
    work_dir = os.path.join(staging_dir, beam_pipeline.WORK_DIR)
    for split in SPLITS:
        records = shards[split]
        split_shards[split] = []
        for index, record in enumerate(records):
            name = shard_file_name(split, index, len(records))
            file_io.move_file(
                os.path.join(work_dir, record["file"]), os.path.join(staging_dir, name)
            )
            split_shards[split].append(
                shard_integrity.describe_shard(os.path.join(staging_dir, name), record["records"])
            )
    return split_shards


def shard_file_name(split: str, index: int, num_shards: int) -> str:
    return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


def _check_arguments(
    image_size,
    vocab_size,
    split_fractions,
    num_workers,
    shard_size_mb,
    max_reject_fraction,
    max_image_pixels,
) -> None:
    problems = []
    if not isinstance(image_size, int) or image_size < 1:
        problems.append(f"image_size must be a positive integer, got {image_size!r}")
    if vocab_size <= tokenizer.FIRST_WORD_PIECE_ID:
        problems.append(f"vocab_size must exceed {tokenizer.FIRST_WORD_PIECE_ID}, got {vocab_size}")
    if (
        len(split_fractions) != len(SPLITS)
        or any(f < 0 for f in split_fractions)
        or not math.isclose(sum(split_fractions), 1.0, abs_tol=1e-6)
        or split_fractions[0] <= 0
    ):
        problems.append(
            "split_fractions must be three non-negative numbers (train, validation, "
            f"test) summing to 1 with train > 0, got {list(split_fractions)}"
        )
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


def _check_reject_fraction(
    rejects: Sequence[manifest.Reject], num_input: int, max_reject_fraction: float
) -> None:
    fraction = len(rejects) / num_input
    if fraction <= max_reject_fraction and len(rejects) < num_input:
        return
    by_reason = collections.Counter(reject.reason for reject in rejects)
    reasons = ", ".join(f"{reason}: {count}" for reason, count in by_reason.most_common())
    examples = "\n".join(
        f"  line {reject.line_number} id={reject.id!r}: {reject.reason} ({reject.detail})"
        for reject in rejects[:_REJECT_EXAMPLES_IN_ERRORS]
    )
    if len(rejects) == num_input:
        verdict = f"All {num_input} listings were rejected"
    else:
        verdict = (
            f"{len(rejects)} of {num_input} listings ({fraction:.0%}) were rejected, "
            f"above the limit of {max_reject_fraction:.0%} (--max_reject_fraction)"
        )
    raise ConversionError(
        f"{verdict}; no shards written. Rejects by reason: {reasons}. First rejects:\n{examples}"
    )


def _check_output_dir(out_dir: str) -> None:
    if file_io.exists(out_dir) and not file_io.isdir(out_dir):
        raise ConversionError(f"Output {out_dir!r} exists and is not a directory.")
    if not file_io.isdir(out_dir):
        return
    foreign = sorted(
        name for name in file_io.listdir(out_dir) if not _OUTPUT_FILE_PATTERN.match(name)
    )
    if foreign:
        raise ConversionError(
            f"Output directory {out_dir!r} holds files the converter did not write "
            f"({', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''}); refusing to "
            "replace it. Choose a new or empty directory, or remove those files."
        )


def _make_staging_dir(out_dir: str) -> str:
    parent = os.path.dirname(out_dir)
    if file_io.is_remote(out_dir):
        staging_dir = os.path.join(
            parent, f".{os.path.basename(out_dir)}.staging-{uuid.uuid4().hex}"
        )
        file_io.makedirs(staging_dir)
        return staging_dir
    os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.staging-", dir=parent)


def _publish(staging_dir: str, out_dir: str) -> None:
    """Moves the finished staging directory to `out_dir`, replacing an earlier output.

    Locally by two directory renames. An object store has no directory rename, so there the
    earlier output's dataset_info.json goes first and the new one comes last: a reader sees
    either no dataset or a whole one, though an interrupted publish needs a re-run.
    """
    if file_io.is_remote(out_dir):
        _publish_file_by_file(staging_dir, out_dir)
        return
    os.chmod(staging_dir, 0o755)
    if not os.path.exists(out_dir):
        os.rename(staging_dir, out_dir)
        return
    previous = tempfile.mkdtemp(
        prefix=f".{os.path.basename(out_dir)}.previous-", dir=os.path.dirname(out_dir)
    )
    os.rmdir(previous)
    os.rename(out_dir, previous)
    os.rename(staging_dir, out_dir)
    shutil.rmtree(previous)


def _publish_file_by_file(staging_dir: str, out_dir: str) -> None:
    if file_io.isdir(out_dir):
        old = file_io.listdir(out_dir)
        for name in sorted(old, key=lambda name: name != DATASET_INFO_FILE):
            file_io.remove_file(os.path.join(out_dir, name))
    file_io.makedirs(out_dir)
    names = file_io.listdir(staging_dir)
    for name in sorted(names, key=lambda name: name == DATASET_INFO_FILE):
        file_io.move_file(os.path.join(staging_dir, name), os.path.join(out_dir, name))
    file_io.remove_tree(staging_dir)


# ----------------------------------------------------------------------------- summaries


def _write_json(value: dict[str, Any], path: str) -> None:
    with file_io.open_file(path, "w") as json_file:
        json_file.write(json.dumps(value, indent=2) + "\n")


def _fingerprint(directory: str, split_shards: dict[str, list[dict[str, Any]]]) -> str:
    """SHA-256 over the shards (their recorded digests, in split order) and the tokenizer:
    equal fingerprints, equal data."""
    digest = hashlib.sha256()
    for split in SPLITS:
        for shard in split_shards[split]:
            digest.update(f"{shard['file']}\0{shard['sha256']}\0".encode())
    for name in (TOKENIZER_FILE, WORDPIECE_FILE):
        if file_io.exists(os.path.join(directory, name)):
            digest.update(name.encode("utf-8") + b"\0")
            digest.update(file_io.read_bytes(os.path.join(directory, name)))
    return digest.hexdigest()


def _size_stats(histogram: dict[int, int]) -> dict[str, float] | None:
    """min / median / max of the values a {value: count} histogram holds."""
    if not histogram:
        return None
    values = np.repeat(
        np.array(sorted(histogram), np.int64), [histogram[value] for value in sorted(histogram)]
    )
    return {"min": int(values[0]), "median": float(np.median(values)), "max": int(values[-1])}


def _unigram_entropy(piece_counts: dict[int, int]) -> float | None:
    total = sum(piece_counts.values())
    if not total:
        return None
    frequencies = np.array(sorted(piece_counts.values()), np.float64) / total
    return round(float(-(frequencies * np.log(frequencies)).sum()), 4)


def _histogram(counts: dict[str, int], prefix: str) -> dict[int, int]:
    return {
        int(key[len(prefix) :]): value for key, value in counts.items() if key.startswith(prefix)
    }


def _dataset_info(
    *,
    num_input,
    summary,
    rejects,
    split_shards,
    image_size,
    processor,
    requested_vocab_size,
    converter_args,
    fingerprint,
) -> dict[str, Any]:
    by_reason = collections.Counter(reject.reason for reject in rejects)
    is_sentencepiece = isinstance(processor, sentencepiece.SentencePieceProcessor)
    counts = collections.Counter(summary["counts"])
    splits = {}
    for split in SPLITS:
        splits[split] = {
            "num_examples": counts[f"split:{split}"],
            "num_groups": summary["split_groups"].get(split, 0),
            "files": [shard["file"] for shard in split_shards[split]],
            "shards": split_shards[split],
        }
    cleaned = {counter: counts[f"cleaned:{counter}"] for counter in CLEANED_COUNTERS}
    cleaned[CLEANED_ASPECT_CROPPED] = counts["aspect_cropped"]
    return {
        "format_version": FORMAT_VERSION,
        "num_input_listings": num_input,
        "num_kept": counts["kept"],
        "num_rejected": len(rejects),
        "rejected_by_reason": {reason: by_reason[reason] for reason in REJECT_REASONS},
        "cleaned": cleaned,
        "num_with_image": counts["with_image"],
        "num_without_title": counts["without_title"],
        # Listings that name a seller (`config.same_seller_negatives` draws negatives
        # within each one; the others are one seller together).
        "num_with_seller": counts["with_seller"],
        "splits": splits,
        "num_groups": summary["num_groups"],
        "categories": summary["categories"],
        "image_size": image_size,
        "image_format": "jpeg",
        "original_image_size": {
            "width": _size_stats(_histogram(counts, "width:")),
            "height": _size_stats(_histogram(counts, "height:")),
        },
        "tokenizer": {
            "file": TOKENIZER_FILE if is_sentencepiece else WORDPIECE_FILE,
            "kind": "sentencepiece" if is_sentencepiece else "wordpiece",
            "vocab_size": tokenizer.piece_count(processor),
            # SentencePiece's --vocab_size; a WordPiece vocabulary is the given vocab.txt.
            "requested_vocab_size": requested_vocab_size if is_sentencepiece else None,
            "special_ids": {
                "pad": tokenizer.PAD_ID,
                "unk": tokenizer.UNK_ID,
                "cls": tokenizer.CLS_ID,
                "sep": tokenizer.SEP_ID,
                "mask": tokenizer.MASK_ID,
            },
            "first_word_piece_id": tokenizer.FIRST_WORD_PIECE_ID,
            # The input-independent level of MLM: what predicting the train split's piece
            # frequencies costs, in nats a masked piece. A model that learns reads its
            # context and goes well below it.
            "train_piece_unigram_entropy_nats": _unigram_entropy(_histogram(counts, "piece:")),
        },
        "rejects_file": REJECTS_FILE,
        "converter_args": converter_args,
        "library_versions": {"pillow": PIL.__version__, "sentencepiece": sentencepiece.__version__},
        "fingerprint": fingerprint,
    }


def _warn_about_empty_splits(info: dict[str, Any], split_fractions: Sequence[float]) -> None:
    for split, fraction in zip(SPLITS, split_fractions):
        if fraction > 0 and info["splits"][split]["num_examples"] == 0:
            logging.warning(
                "Split %r is empty although its fraction is %s: the catalog has too "
                "few product groups.",
                split,
                fraction,
            )


def format_summary(info: dict[str, Any], out_dir: str) -> str:
    """Human-readable end-of-run summary: kept, rejects by reason, cleanings, files."""
    lines = [
        f"Kept {info['num_kept']} of {info['num_input_listings']} listings "
        f"({info['num_rejected']} rejected, {info['num_groups']} product groups, "
        f"{len(info['categories'])} categories)."
    ]
    rejected = {reason: count for reason, count in info["rejected_by_reason"].items() if count}
    if rejected:
        lines.append(
            "Rejected: " + ", ".join(f"{reason} {count}" for reason, count in rejected.items())
        )
    cleaned = {counter: count for counter, count in info["cleaned"].items() if count}
    if cleaned:
        lines.append(
            "Cleaned: " + ", ".join(f"{counter} {count}" for counter, count in cleaned.items())
        )
    lines.append(f"Listings that name a seller: {info['num_with_seller']}.")
    for split in SPLITS:
        split_info = info["splits"][split]
        lines.append(
            f"  {split}: {split_info['num_examples']} examples, "
            f"{split_info['num_groups']} groups, {len(split_info['files'])} shards"
        )
    lines.append(
        f"Tokenizer: {info['tokenizer']['vocab_size']} pieces ({info['tokenizer']['kind']})."
    )
    lines.append(
        f"Files in {out_dir}: shards, {DATASET_INFO_FILE}, {info['tokenizer']['file']}, "
        f"{REJECTS_FILE}."
    )
    return "\n".join(lines)
