"""The main job: the embedded catalog, end to end, on one machine.

  python -m item_jax.cli.main_job --workdir runs/demo

1. Generates the embedded procedural catalog (`item_jax/catalogs/synthetic.py`): 1,200
   products, 4 listings each.
2. Converts it to TFRecord shards and trains the SentencePiece tokenizer on its titles.
3. Pretrains `configs/demo.py` (the CPU-budget model, with the five ITEm objectives and
   the contrastive extension) with validation retrieval every 250 steps; resumes if the
   workdir has a run.
4. Evaluates the trained embedding: same-product search, category prediction, modality
   balance, beside the reference rows (the untrained encoder, title TF-IDF, a colour
   histogram and both concatenated; see `item_jax/evaluation/protocol.py`).
Each stage is skipped when its output already exists, so re-running continues the job.
"""

import json
import os

from absl import flags, logging

from item_jax import configs, export, train_loop, train_step
from item_jax.catalogs import synthetic as synthetic_catalog
from item_jax.cli import common
from item_jax.data import convert, dataset_info
from item_jax.evaluation import protocol

MAIN_JOB_CONFIG = "demo.py"


def define_flags():
    flags.DEFINE_string("workdir", "runs/demo", "Where everything is written.")
    flags.DEFINE_integer("num_products", 1200, "Products in the catalog.")
    flags.DEFINE_integer("listings_per_product", 4, "Listings per product.")
    flags.DEFINE_integer("steps", None, "Training steps (default: configs/demo.py's).")
    flags.DEFINE_bool("prepare_only", False, "Stop after stages 1-2 (catalog and shards).")


def prepare_catalog(
    workdir: str, num_products: int, listings_per_product: int, image_size: int
) -> str:
    """Stages 1 and 2; returns the shard directory."""
    catalog_dir = os.path.join(workdir, "catalog")
    manifest = os.path.join(catalog_dir, "manifest.jsonl")
    if not os.path.exists(manifest):
        logging.info("Stage 1/4: generating the embedded catalog in %s", catalog_dir)
        synthetic_catalog.generate_catalog(
            catalog_dir, num_products=num_products, listings_per_product=listings_per_product
        )
    shard_dir = os.path.join(workdir, "shards")
    if not os.path.exists(os.path.join(shard_dir, dataset_info.DATASET_INFO_FILE)):
        logging.info("Stage 2/4: converting to TFRecord shards in %s", shard_dir)
        info = convert.convert_catalog(manifest, shard_dir, image_size=image_size)
        logging.info("%s", convert.format_summary(info, shard_dir))
    return shard_dir


def main(argv):
    values = common.start(argv, "workdir")
    workdir = values.workdir
    config = configs.load_config(MAIN_JOB_CONFIG)
    config.data.dir = prepare_catalog(
        workdir, values.num_products, values.listings_per_product, config.model.image_size
    )
    if values.prepare_only:
        print(f"shards: {config.data.dir}")
        return
    if values.steps:
        config.total_steps = values.steps
    logging.info(
        "Stage 3/4: pretraining configs/demo.py for %d steps in %s",
        config.total_steps,
        os.path.join(workdir, "train"),
    )
    train_dir = os.path.join(workdir, "train")
    metrics = train_loop.train_and_evaluate(
        config, train_dir, evaluate_fn=protocol.make_validation_evaluator(config, config.data.dir)
    )
    logging.info("Training done: %s", json.dumps(metrics))

    logging.info("Stage 4/4: exporting and evaluating on the test split (unseen products)")
    export_dir, eval_dir = os.path.join(workdir, "export"), os.path.join(workdir, "eval")
    export.export_model(train_dir, export_dir)
    _, params, step = train_step.restore_trained_params(train_dir)
    results = protocol.evaluate_params(
        params,
        config,
        config.data.dir,
        out_dir=eval_dir,
        title=f"ITEm (configs/demo.py) on the embedded catalog (step {step})",
    )
    print("\n" + protocol.format_summary(results))
    print(
        f"\nexport: {export_dir}\nreport: {os.path.join(eval_dir, 'report.md')} and "
        f"{os.path.join(eval_dir, 'report.html')} (open it in a browser)\nplots: "
        + ", ".join(results["plots"].values())
    )


def run():
    common.run(define_flags, main)


if __name__ == "__main__":
    run()
