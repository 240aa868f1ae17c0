"""Exports a trained model: parameters only, no optimizer state, no pickle.

  python -m item_jax.cli.export --workdir runs/demo/train --out runs/demo/export \
      [--dtype bfloat16] [--format safetensors]
  # A model in BERT layout on WordPiece titles (docs/pretrained.md): its text side as a
  # directory that transformers.BertModel.from_pretrained loads.
  python -m item_jax.cli.export --workdir W --out DIR --format hf_bert

The format and its loader are `item_jax/export.py`; `item_jax.load_exported(path)` turns the
directory back into an embed function.
"""

import json

from absl import flags

from item_jax import export
from item_jax.cli import common


def define_flags():
    flags.DEFINE_string("workdir", None, "Training workdir to export from.")
    flags.DEFINE_string("out", None, "Export directory to write.")
    flags.DEFINE_enum("dtype", "float32", sorted(export.EXPORT_DTYPES), "Stored dtype.")
    flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
    flags.DEFINE_enum(
        "format",
        "msgpack",
        sorted(export.EXPORT_FORMATS),
        "Parameter file: flax msgpack, or safetensors (flat, dot-joined names); "
        "hf_bert: a Hugging Face BertModel directory of the text side.",
    )


def main(argv):
    values = common.start(argv, "workdir", "out")
    print(
        json.dumps(
            export.export_model(
                values.workdir,
                values.out,
                dtype=values.dtype,
                step=values.step,
                params_format=values.format,
            )
        )
    )


def run():
    common.run(define_flags, main)


if __name__ == "__main__":
    run()
