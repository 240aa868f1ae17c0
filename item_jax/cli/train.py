"""Pretrains ITEm: `python -m item_jax.cli.train --config tiny.py --workdir DIR`.

Running it again on the same workdir resumes from the latest complete checkpoint, at the
same data position. SIGTERM (a maintenance event) saves the current step and exits.
Overrides: `--config.total_steps=200`, `--config.data.dir=DIR`, `--config.mesh.fsdp=2`.
Multi-host: `jax.distributed` is initialised from the TPU / SLURM environment, or from
`--coordinator_address --num_processes --process_id`. The loop is `item_jax/train_loop.py`.
Starting from BERT / ViT checkpoints: `--config.init.text_from DIR` (docs/pretrained.md).
A config that cannot run (a wrong value, a mismatch with those checkpoints) exits 1 with
`error: ...` before anything is compiled; so do a missing or damaged data directory and a
checkpoint that cannot be written (`item_jax/cli/common.py`; `--verbose` adds the traceback).
"""

import json

from absl import flags, logging

from item_jax import configs, distributed, train_loop
from item_jax.cli import common
from item_jax.evaluation import protocol


def define_flags():
    configs.define_config_flag()
    flags.DEFINE_string("workdir", None, "Checkpoints, logs and metrics go here.")
    flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
    flags.DEFINE_integer("num_processes", None, "Processes in the job.")
    flags.DEFINE_integer("process_id", None, "This process's index.")


def main(argv):
    values = common.start(argv, "config", "workdir")
    distributed.initialize_distributed(
        values.coordinator_address, values.num_processes, values.process_id
    )
    config = values.config
    evaluate_fn = None
    if config.data.dir:  # Every process takes part in validation (`evaluation/protocol.py`).
        evaluate_fn = protocol.make_validation_evaluator(config, config.data.dir)
    metrics = train_loop.train_and_evaluate(config, values.workdir, evaluate_fn=evaluate_fn)
    logging.info("Done: %s", json.dumps(metrics))
    distributed.shutdown_distributed()


def run():
    common.run(define_flags, main)


if __name__ == "__main__":
    run()
