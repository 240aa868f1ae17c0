"""Benchmarks that print one JSON line each.

  python -m item_jax.cli.bench train --config tiny.py --steps 20 [--blocks 6 --steps 6]
  python -m item_jax.cli.bench input --config base.py [--data_dir DIR] [--batches 50] \
      [--train_examples_per_s 2000]
  python -m item_jax.cli.bench memorise --config demo.py --data_dir runs/demo/shards \
      [--examples 16] [--steps 300]
  python -m item_jax.cli.bench vs-peer --config tiny.py [--rounds 3] [--steps 20] \
      [--peer_steps 10] [--peer_python /tmp/peer/bin/python] [--max_load 1.0] \
      [--allocator tcmalloc|glibc]
  python -m item_jax.cli.bench image-probe --config demo.py --data_dir runs/demo/shards \
      [--steps 600]
  python -m item_jax.cli.bench search [--gallery_rows 1000000 --width 256 --queries 2048 --k 10]
  python -m item_jax.cli.bench convert --manifest M.jsonl [--image_size 64 --worker_counts 1,2]

`train` times the compiled step on device-resident random batches
(`item_jax/benchmarks/train_throughput.py`); `input` times the host tf.data pipeline (read,
parse, decode, resize, normalise, batch; `benchmarks/input_throughput.py`); `memorise`
trains on one fixed batch of real listings and reports whether every objective learns it
(`benchmarks/memorisation.py`); `image-probe` trains the encoder supervised on the
category from photos alone, a diagnostic of the image path (`benchmarks/
supervised_image_probe.py`); `vs-peer` alternates `train` with the PyTorch peer at the
same dims and quotes medians only on a quiet machine (`benchmarks/vs_peer.py`); `search`
times exact top-k over a synthetic gallery, on one device and sharded over all
(`benchmarks/search_throughput.py`); `convert` times the whole converter on the
DirectRunner for each worker count (`benchmarks/convert_throughput.py`).
"""

import json

from absl import app, flags
from ml_collections import config_flags

from item_jax import configs
from item_jax.cli import common

COMMANDS = ("train", "input", "memorise", "image-probe", "vs-peer", "search", "convert")
MEMORISE_DEFAULT_STEPS = 300
IMAGE_PROBE_DEFAULT_STEPS = 600


def define_flags():
    configs.define_config_flag(lock_config=False)
    flags.DEFINE_integer("steps", 20, "Timed train steps (per block).")
    flags.DEFINE_integer(
        "blocks",
        1,
        "train: blocks of --steps steps; step_ms is the "
        "fastest block's (compare two versions with --blocks 6 --steps 6).",
    )
    flags.DEFINE_integer("batches", 50, "Timed input batches.")
    flags.DEFINE_integer("warmup_batches", 5, "input: batches read before timing.")
    flags.DEFINE_string(
        "data_dir",
        None,
        "Shards to read (input; default: synthetic), or to train on (memorise, image-probe).",
    )
    flags.DEFINE_integer("examples", 16, "memorise: listings in the fixed batch.")
    flags.DEFINE_float(
        "train_examples_per_s",
        None,
        "input: the training step's examples/s per host, reported next to the pipeline's rate.",
    )
    flags.DEFINE_integer("rounds", 3, "vs-peer: alternating rounds.")
    flags.DEFINE_integer("peer_steps", 10, "vs-peer: the peer's timed steps.")
    from item_jax.benchmarks import vs_peer  # pylint: disable=g-import-not-at-top

    flags.DEFINE_string("peer_python", vs_peer.DEFAULT_PEER_PYTHON, "vs-peer: Python with torch.")
    flags.DEFINE_string("peer_script", vs_peer.DEFAULT_PEER_SCRIPT, "vs-peer: the peer.")
    flags.DEFINE_float("max_load", 1.0, "vs-peer: refuse above this 1-minute load average.")
    flags.DEFINE_float(
        "wait_quiet_s",
        0.0,
        "vs-peer: wait up to this long for the load "
        "average to fall under --max_load before refusing.",
    )
    flags.DEFINE_enum(
        "allocator",
        None,
        ["tcmalloc", "glibc"],
        "vs-peer: the malloc both sides run on (default: tcmalloc if installed).",
    )
    flags.DEFINE_enum(
        "precision",
        "float32",
        list(vs_peer.PRECISIONS),
        "vs-peer: both sides' compute precision (bfloat16: item_jax's "
        "model.compute_dtype, the peer under torch's CPU autocast).",
    )
    flags.DEFINE_integer("gallery_rows", 1_000_000, "search: synthetic gallery rows.")
    flags.DEFINE_integer("width", 256, "search: embedding width.")
    flags.DEFINE_integer("queries", 2048, "search: timed queries.")
    flags.DEFINE_integer("k", 10, "search: neighbours per query.")
    flags.DEFINE_string("manifest", None, "convert: the manifest to convert.")
    flags.DEFINE_integer("image_size", 64, "convert: stored image size.")
    flags.DEFINE_list("worker_counts", ["1", "2"], "convert: DirectRunner worker counts.")


def main(argv):
    if len(argv) != 2 or argv[1] not in COMMANDS:
        raise app.UsageError(
            f"usage: python -m item_jax.cli.bench {{{'|'.join(COMMANDS)}}} --config CONFIG [flags]"
        )
    if argv[1] == "search":
        from item_jax.benchmarks import search_throughput  # pylint: disable=g-import-not-at-top

        values = common.start(argv[:1])
        print(
            json.dumps(
                search_throughput.benchmark_search(
                    gallery_rows=values.gallery_rows,
                    width=values.width,
                    queries=values.queries,
                    k=values.k,
                )
            ),
            flush=True,
        )
        return
    if argv[1] == "convert":
        from item_jax.benchmarks import convert_throughput  # pylint: disable=g-import-not-at-top

        values = common.start(argv[:1], "manifest")
        print(
            json.dumps(
                convert_throughput.benchmark_convert(
                    values.manifest,
                    image_size=values.image_size,
                    worker_counts=[int(count) for count in values.worker_counts],
                )
            ),
            flush=True,
        )
        return
    values = common.start(argv[:1], "config")
    config = values.config
    if argv[1] == "train":
        from item_jax.benchmarks import train_throughput  # pylint: disable=g-import-not-at-top

        result = train_throughput.benchmark_train(config, steps=values.steps, blocks=values.blocks)
    elif argv[1] == "memorise":
        from item_jax.benchmarks import memorisation  # pylint: disable=g-import-not-at-top

        if not values.data_dir:
            raise app.UsageError("memorise needs --data_dir (converted shards)")
        steps = values.steps if values["steps"].present else MEMORISE_DEFAULT_STEPS
        batch = memorisation.first_listings(config, values.data_dir, values.examples)
        result = memorisation.memorise(config, batch, steps=steps)
        result["failures"] = memorisation.check_memorised(result)
    elif argv[1] == "image-probe":
        from item_jax.benchmarks import supervised_image_probe  # pylint: disable=g-import-not-at-top

        if not values.data_dir:
            raise app.UsageError("image-probe needs --data_dir (converted shards)")
        steps = values.steps if values["steps"].present else IMAGE_PROBE_DEFAULT_STEPS
        result = supervised_image_probe.probe_image_path(config, values.data_dir, steps=steps)
    elif argv[1] == "vs-peer":
        from item_jax.benchmarks import vs_peer  # pylint: disable=g-import-not-at-top

        spec = config_flags.get_config_filename(values["config"])
        result = vs_peer.benchmark_vs_peer(
            spec,
            config,
            rounds=values.rounds,
            steps=values.steps,
            peer_steps=values.peer_steps,
            peer_python=values.peer_python,
            peer_script=values.peer_script,
            max_load=values.max_load,
            allocator=values.allocator,
            precision=values.precision,
            wait_quiet_s=values.wait_quiet_s,
        )
    else:
        from item_jax.benchmarks import input_throughput  # pylint: disable=g-import-not-at-top

        result = input_throughput.benchmark_input(
            config,
            data_dir=values.data_dir,
            num_batches=values.batches,
            warmup_batches=values.warmup_batches,
            train_examples_per_s=values.train_examples_per_s,
        )
    print(json.dumps(result), flush=True)


def run():
    common.run(define_flags, main)


if __name__ == "__main__":
    run()
