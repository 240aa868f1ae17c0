"""Catalog manifest -> TFRecord shards, tokenizer, rejects, dataset_info.json.

  python -m item_jax.cli.convert --manifest catalog/manifest.jsonl --out runs/demo/shards \
      [--image_size 256 --vocab_size 8000 --split_fractions 0.8,0.1,0.1 --seed 0 \
       --num_workers N --shard_size_mb 128 --allow_empty_titles \
       --max_reject_fraction 0.5 --max_image_pixels 50000000 --noprogress]
  # Titles in a BERT's WordPiece vocabulary instead of a SentencePiece model trained here
  # (to start training from that BERT: docs/pretrained.md):
  python -m item_jax.cli.convert --manifest ... --out ... --wordpiece_vocab BERT_DIR/vocab.txt
  # On a cluster: the same Beam pipeline on another runner (docs/convert.md); --dry_run
  # prints Beam's options (validated for that runner) and the stages, and runs nothing:
  python -m item_jax.cli.convert --manifest ... --out ... --runner DataflowRunner \
      --beam_args="--project=P --region=R --temp_location=gs://B/tmp" --dry_run

The work is done by `item_jax.data.convert.convert_catalog`; see its module docstring.
Exits 1 with `error: ...` when the conversion cannot be done (a missing manifest, too
many rejects, an output directory holding other files).
"""

import shlex

from absl import flags

from item_jax.cli import common
from item_jax.data import convert
from item_jax.data.dataset_info import DEFAULT_MAX_IMAGE_PIXELS


def define_flags():
    flags.DEFINE_string("manifest", None, "JSONL or CSV manifest; image paths are relative to it.")
    flags.DEFINE_string(
        "out", None, "Output directory (replaced if it holds an earlier conversion)."
    )
    flags.DEFINE_integer("image_size", 256, "Shorter side of the stored JPEGs, in pixels.")
    flags.DEFINE_integer("vocab_size", 8000, "Upper bound on the SentencePiece vocabulary.")
    flags.DEFINE_list(
        "split_fractions",
        ["0.8", "0.1", "0.1"],
        "train,validation,test fractions of product groups.",
    )
    flags.DEFINE_integer("seed", 0, "Seed of the split assignment, shard order and tokenizer.")
    flags.DEFINE_integer(
        "num_workers",
        None,
        "DirectRunner worker processes (default: all CPUs; 1 runs in this process).",
    )
    flags.DEFINE_string(
        "runner",
        "DirectRunner",
        "Apache Beam runner: DirectRunner, DataflowRunner, FlinkRunner, SparkRunner, ...",
    )
    flags.DEFINE_string(
        "beam_args",
        "",
        "Beam pipeline options for the runner, one string "
        '(e.g. "--project=P --region=R --temp_location=gs://B/tmp").',
    )
    flags.DEFINE_bool(
        "dry_run", False, "Print the runner, Beam's options and the stages; convert nothing."
    )
    flags.DEFINE_float("shard_size_mb", 128, "Target size of one shard, in MiB.")
    flags.DEFINE_bool(
        "allow_empty_titles", False, "Keep image-only listings instead of rejecting them."
    )
    flags.DEFINE_float(
        "max_reject_fraction", 0.5, "Stop with an error when more listings than this are rejected."
    )
    flags.DEFINE_integer(
        "max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS, "Reject images with more pixels than this."
    )
    flags.DEFINE_string(
        "wordpiece_vocab",
        None,
        "A BERT vocab.txt: tokenize titles with its WordPiece vocabulary instead "
        "of training SentencePiece (--vocab_size is then unused).",
    )
    flags.DEFINE_enum(
        "wordpiece_lowercase",
        "auto",
        ["auto", "true", "false"],
        "Lower-case titles before WordPiece (auto: the tokenizer_config.json "
        "beside vocab.txt says, else true).",
    )
    flags.DEFINE_bool(
        "split_punctuation",
        False,
        "SentencePiece: a space on either side of every punctuation character before a "
        "title is cut into pieces, so '(santa)' and 'santa' share a piece (stored in "
        'tokenizer.model; docs/design.md, "Text tokens").',
    )
    flags.DEFINE_bool("progress", True, "Log the pipeline's start, end and throughput.")


def main(argv):
    values = common.start(argv, "manifest", "out")
    try:
        fractions = tuple(float(part) for part in values.split_fractions)
    except ValueError:
        common.fail(
            "--split_fractions: expected three comma-separated numbers like 0.8,0.1,0.1, "
            f"got {','.join(values.split_fractions)!r}",
            common.USAGE_EXIT_STATUS,
        )
    try:
        if values.dry_run:
            planned = convert.plan(
                values.manifest,
                values.out,
                runner=values.runner,
                num_workers=values.num_workers,
                pipeline_args=shlex.split(values.beam_args),
            )
            print(
                f"Runner: {planned['runner']}\nBeam options: {planned['pipeline_options']}\n"
                f"Stages: {' -> '.join(planned['stages'])}"
            )
            return
        info = convert.convert_catalog(
            values.manifest,
            values.out,
            image_size=values.image_size,
            vocab_size=values.vocab_size,
            split_fractions=fractions,
            seed=values.seed,
            num_workers=values.num_workers,
            shard_size_mb=values.shard_size_mb,
            allow_empty_titles=values.allow_empty_titles,
            max_reject_fraction=values.max_reject_fraction,
            max_image_pixels=values.max_image_pixels,
            wordpiece_vocab=values.wordpiece_vocab,
            wordpiece_lowercase={"auto": None, "true": True, "false": False}[
                values.wordpiece_lowercase
            ],
            split_punctuation=values.split_punctuation,
            runner=values.runner,
            pipeline_args=shlex.split(values.beam_args),
            show_progress=values.progress,
        )
    except ValueError as error:  # The manifest's and the options' values, named by it.
        common.fail(str(error))
    print(convert.format_summary(info, values.out))


def run():
    common.run(define_flags, main)


if __name__ == "__main__":
    run()
