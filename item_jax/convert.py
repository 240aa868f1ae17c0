"""Command line for the catalog converter: manifest -> TFRecord shards + tokenizer.

  python -m item_jax.convert --manifest catalog/manifest.jsonl --out runs/demo/shards \
      [--image_size 256 --vocab_size 8000 --split_fractions 0.8,0.1,0.1 --seed 0 \
       --num_workers N --shard_size_mb 128 --allow_empty_titles \
       --max_reject_fraction 0.5 --max_image_pixels 50000000 --no_progress]

The work is done by `item_jax.data.convert.convert_catalog`; see its module docstring.
"""

import argparse
import logging
import sys

from item_jax.data import convert


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="python -m item_jax.convert",
      description="Convert a JSONL or CSV catalog manifest into TFRecord shards, a "
                  "SentencePiece tokenizer, rejects.jsonl and dataset_info.json.")
  parser.add_argument("--manifest", required=True,
                      help="JSONL or CSV manifest; image paths are relative to it.")
  parser.add_argument("--out", required=True,
                      help="Output directory (replaced if it holds an earlier conversion).")
  parser.add_argument("--image_size", type=int, default=256,
                      help="Shorter side of the stored JPEGs, in pixels.")
  parser.add_argument("--vocab_size", type=int, default=8000,
                      help="Upper bound on the SentencePiece vocabulary.")
  parser.add_argument("--split_fractions", type=_fractions, default=(0.8, 0.1, 0.1),
                      help="train,validation,test fractions of product groups.")
  parser.add_argument("--seed", type=int, default=0,
                      help="Seed of the split assignment, shard order and tokenizer.")
  parser.add_argument("--num_workers", type=int, default=None,
                      help="Image worker processes (default: all CPUs).")
  parser.add_argument("--shard_size_mb", type=float, default=128,
                      help="Target size of one shard, in MiB.")
  parser.add_argument("--allow_empty_titles", action="store_true",
                      help="Keep image-only listings instead of rejecting them.")
  parser.add_argument("--max_reject_fraction", type=float, default=0.5,
                      help="Stop with an error when more listings than this are rejected.")
  parser.add_argument("--max_image_pixels", type=int, default=50_000_000,
                      help="Reject images with more pixels than this.")
  parser.add_argument("--no_progress", action="store_true", help="Hide the progress bars.")
  return parser.parse_args(argv)


def _fractions(text: str) -> tuple[float, ...]:
  try:
    return tuple(float(part) for part in text.split(","))
  except ValueError as error:
    raise argparse.ArgumentTypeError(
        f"expected three comma-separated numbers like 0.8,0.1,0.1, got {text!r}") from error


def main(argv=None) -> int:
  logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
  args = parse_args(argv)
  try:
    info = convert.convert_catalog(
        args.manifest, args.out, image_size=args.image_size, vocab_size=args.vocab_size,
        split_fractions=args.split_fractions, seed=args.seed, num_workers=args.num_workers,
        shard_size_mb=args.shard_size_mb, allow_empty_titles=args.allow_empty_titles,
        max_reject_fraction=args.max_reject_fraction,
        max_image_pixels=args.max_image_pixels, show_progress=not args.no_progress)
  except (convert.ConversionError, FileNotFoundError, ValueError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 1
  print(convert.format_summary(info, args.out))
  return 0


if __name__ == "__main__":
  sys.exit(main())
