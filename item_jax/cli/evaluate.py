"""Evaluates a trained model (docs/design.md, "Evaluation protocol") beside the reference rows.

  python -m item_jax.cli.evaluate --workdir runs/demo/train --out runs/demo/eval [--step 200]
  python -m item_jax.cli.evaluate --export runs/demo/export --data_dir runs/demo/shards --out DIR

Same-product search on the test split, category prediction, modality balance and the
reference rows (untrained encoder, title TF-IDF, colour histogram); writes metrics.json,
report.md, report.html (what the model retrieves beside title TF-IDF) and plots to --out.
The protocol is `item_jax/evaluation/protocol.py`, running the evaluators that the run's
`config.evaluators` names (`item_jax/evaluation/evaluators/`). Damaged shards are read as
the run's `config.data.on_corrupt_record` says (or `--on_corrupt_record`): "stop" names the broken
shard, "skip" reads the records the trainer read and prints how many were left out
(`item_jax/data/readable_records.py`).
"""

import json
import os

from absl import app, flags

from item_jax import export, train_step
from item_jax.cli import common
from item_jax.data import readable_records
from item_jax.evaluation import protocol, report


def define_flags():
    flags.DEFINE_string("workdir", None, "Training workdir (latest checkpoint is evaluated).")
    flags.DEFINE_integer("step", None, "With --workdir: the checkpoint step (default: latest).")
    flags.DEFINE_string("export", None, "Export directory (python -m item_jax.cli.export).")
    flags.DEFINE_string("data_dir", None, "Shards to evaluate on (default: the run's data).")
    flags.DEFINE_string(
        "out", None, "Directory for metrics.json, report.md, report.html and plots."
    )
    flags.DEFINE_enum(
        "on_corrupt_record",
        None,
        list(readable_records.MODES),
        "How to read a damaged shard (default: the run's config.data.on_corrupt_record).",
    )


def main(argv):
    flag_values = common.start(argv, "out")
    if bool(flag_values.workdir) == bool(flag_values.export):
        raise app.UsageError("give exactly one of --workdir (a training run) or --export")
    if flag_values.workdir:
        config, params, step = train_step.restore_trained_params(
            flag_values.workdir, flag_values.step
        )
        source = f"{flag_values.workdir} (step {step})"
    else:
        loaded = export.load_exported(flag_values.export)
        config, params, source = loaded.config, loaded.params, flag_values.export
    data_dir = flag_values.data_dir or config.data.dir
    if flag_values.on_corrupt_record:
        config.data.on_corrupt_record = flag_values.on_corrupt_record
    metrics = protocol.evaluate_params(
        params, config, data_dir, out_dir=flag_values.out, title=f"ITEm evaluation of {source}"
    )
    print(protocol.format_summary(metrics))
    left_out = {
        key: value for key, value in metrics["data"].items() if key.startswith("records_left_out_")
    }
    if left_out:
        print(
            "records left out (on_corrupt_record='skip'; the log names them): "
            + ", ".join(
                f"{value} of the {key.rsplit('_', 1)[1]} split" for key, value in left_out.items()
            )
        )
    print(
        f"report: {os.path.join(flag_values.out, 'report.md')}, "
        f"{os.path.join(flag_values.out, 'report.html')}; plots: "
        + ", ".join(metrics["plots"].values())
    )
    print(json.dumps(report.flatten_metrics({k: v for k, v in metrics.items() if k != "plots"})))


def run():
    common.run(define_flags, main)


if __name__ == "__main__":
    run()
