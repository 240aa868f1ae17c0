"""Exports a trained model: parameters only, no optimizer state, no pickle.

  python -m item_jax.export --workdir runs/demo/train --out runs/demo/export [--dtype bfloat16]

The export directory holds
  * `params.msgpack`: the parameter tree (flax msgpack serialisation: arrays and dicts only),
    in float32 or bfloat16;
  * `config.json`: the training config (the model block is what the loader needs);
  * `tokenizer.model`: the SentencePiece model of the training data;
  * `export_info.json`: the step, the dtype, the parameter count, the source workdir and the
    converter's stored image size (the loader re-encodes raw images the same way).
`item_jax.load_exported(path)` turns it back into an embed function (`exported_model.py`).
"""

import json
import os
import shutil

import flax.serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags, logging

from item_jax import checkpoint, logging_setup, sharding, train_step
from item_jax.data import convert
from item_jax.exported_model import CONFIG_FILE, INFO_FILE, PARAMS_FILE, TOKENIZER_FILE
from item_jax.model import model_from_config

EXPORT_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def load_workdir_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a training run wrote to `workdir/config.json`."""
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path} not found: is {workdir} a training workdir "
                            "(python -m item_jax.train --workdir ...)?")
  with open(path, encoding="utf-8") as f:
    return ml_collections.ConfigDict(json.load(f))


def restore_trained_params(workdir: str, step: int | None = None):
  """(config, params on one device, step) of the latest (or given) checkpoint in `workdir`."""
  config = load_workdir_config(workdir)
  config.mesh.update(data=1, fsdp=1, tensor=1)
  mesh = sharding.make_mesh(config.mesh, jax.local_devices()[:1])
  setup = train_step.build_train_setup(model_from_config(config.model), config, mesh)
  checkpointer = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"),
                                         save_every_steps=1, keep=1, async_save=False)
  try:
    state, _ = checkpointer.restore(setup.abstract_state, step)
  finally:
    checkpointer.close()
  return config, state["params"], int(state["step"])


def export_model(workdir: str, out_dir: str, *, dtype: str = "float32",
                 step: int | None = None) -> dict:
  """Writes the export directory; returns its export_info."""
  if dtype not in EXPORT_DTYPES:
    raise ValueError(f"--dtype must be one of {sorted(EXPORT_DTYPES)}, got {dtype!r}")
  config, params, restored_step = restore_trained_params(workdir, step)
  params = jax.tree.map(lambda x: np.asarray(jnp.asarray(x, EXPORT_DTYPES[dtype])), params)
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, PARAMS_FILE), "wb") as f:
    f.write(flax.serialization.msgpack_serialize(params))
  with open(os.path.join(out_dir, CONFIG_FILE), "w", encoding="utf-8") as f:
    f.write(config.to_json_best_effort(indent=2))
  tokenizer_path = os.path.join(config.data.dir, convert.TOKENIZER_FILE)
  if not os.path.isfile(tokenizer_path):
    raise FileNotFoundError(f"The run's tokenizer {tokenizer_path} is missing; the export "
                            "needs it to embed titles.")
  shutil.copyfile(tokenizer_path, os.path.join(out_dir, TOKENIZER_FILE))
  dataset_info = convert.load_dataset_info(config.data.dir)
  info = dict(step=restored_step, dtype=dtype, workdir=os.path.abspath(workdir),
              stored_image_size=int(dataset_info["image_size"]),
              num_params=int(sum(x.size for x in jax.tree.leaves(params))),
              embed_dim=int(config.model.embed_dim))
  with open(os.path.join(out_dir, INFO_FILE), "w", encoding="utf-8") as f:
    json.dump(info, f, indent=2)
  logging.info("Exported step %d (%s, %d parameters) to %s", restored_step, dtype,
               info["num_params"], out_dir)
  return info


def main(argv):
  logging_setup.quiet_library_logs()
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not flags.FLAGS.workdir or not flags.FLAGS.out:
    raise app.UsageError("--workdir and --out are required")
  print(json.dumps(export_model(flags.FLAGS.workdir, flags.FLAGS.out, dtype=flags.FLAGS.dtype,
                                step=flags.FLAGS.step)))


def run():
  """Command-line entry point (flags are defined here, so importing the module is free)."""
  flags.DEFINE_string("workdir", None, "Training workdir to export from.")
  flags.DEFINE_string("out", None, "Export directory to write.")
  flags.DEFINE_enum("dtype", "float32", sorted(EXPORT_DTYPES), "Stored dtype.")
  flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
  app.run(main)


if __name__ == "__main__":
  run()
