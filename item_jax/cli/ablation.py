"""Trains and evaluates the ablation variants of `configs/ablation.py`, then tabulates.

  python -m item_jax.cli.ablation --data_dir runs/demo/shards --workdir runs/ablation [--steps 400]

Every variant trains on the same shards for the same number of steps (resuming if its
workdir has checkpoints; a finished one is only re-evaluated), is evaluated on the test
split (`item_jax/evaluation/protocol.py`), and lands in WORKDIR/comparison.md (the table),
WORKDIR/comparison.json and WORKDIR/recall_at_k.png (Recall@k of every variant). The
table's first rows are the references: the same architecture untrained (step 0, the
config's seed), title TF-IDF, a colour histogram and the two concatenated
(`item_jax/evaluation/baselines.py`); they tell whether pretraining improved the embedding
at all, and how it compares with the search a catalog already has. A second table
gives each variant's validation Recall@1 at every periodic evaluation during training
(`config.eval_every_steps`), so a variant that was better mid-way than at the end shows.
"""

import json
import os

import numpy as np
from absl import flags, logging

from item_jax import configs, train_loop, train_step
from item_jax.cli import common
from item_jax.config_check import ConfigError
from item_jax.configs import ablation as ablation_variants
from item_jax.data import input_pipeline
from item_jax.evaluation import plots, protocol, report
from item_jax.model import model_from_config


def ablation_config(variant: str):
    """ablation.py:VARIANT (`item_jax/configs/ablation.py`)."""
    return configs.load_config(f"ablation.py:{variant}")


def validation_curve(workdir: str) -> dict[int, float]:
    """{step: validation Recall@1} from the periodic evaluations in WORKDIR/metrics.jsonl."""
    curve = {}
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return curve
    with open(path, encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            if record.get("split") == "validation" and "retrieval.recall@1" in record:
                curve[int(record["step"])] = float(record["retrieval.recall@1"])
    return curve


def run_ablation(
    data_dir: str,
    workdir: str,
    *,
    steps: int | None = None,
    variants: tuple[str, ...] | None = None,
    overrides: dict | None = None,
) -> dict:
    """Trains and evaluates each variant; returns {variant: metrics}.

    Args:
      data_dir: converted shards shared by every variant.
      workdir: one sub-directory per variant, plus the tables and the plot.
      steps: training steps per variant (default: the config's).
      variants: a subset of `configs/ablation.py`'s variants (default: all nine).
      overrides: flattened config fields ({"model.num_layers": 1}) set in every variant.
    """
    all_variants = tuple(ablation_variants.RECIPES)
    variants = variants or all_variants
    unknown = sorted(set(variants) - set(all_variants))
    if unknown:
        raise ConfigError(f"unknown ablation variants {unknown}; known: {list(all_variants)}")
    for split in ("train", "validation", "test"):  # Missing shards: said before any compile.
        input_pipeline.list_split_files(data_dir, split)
    results, curves, validation_curves = {}, {}, {}

    def variant_config(variant):
        config = ablation_config(variant)
        config.update_from_flattened_dict(dict(overrides or {}))
        config.data.dir = data_dir
        if steps:
            config.total_steps = steps
        return config

    def record(name, params, config, out_dir, extra):
        metrics = protocol.evaluate_params(
            params,
            config,
            data_dir,
            out_dir=out_dir,
            title=f"Ablation {name}",
            with_references=False,
        )
        metrics.update(extra)
        results[name] = {k: v for k, v in metrics.items() if k != "plots"}
        curves[name] = np.asarray(metrics["recall_at_k_curve"][:20])
        logging.info("Ablation %s:\n%s", name, protocol.format_summary(metrics))

    # Reference rows first: the same architecture untrained (step 0) and the classical
    # baselines, on the same splits (their validation Recall@1 is the curve table's step 0).
    reference_config = variant_config("full")
    for name, metrics in protocol.evaluate_references(reference_config, data_dir).items():
        results[name] = dict(metrics, steps=0)
    validation = protocol.make_validation_evaluator(reference_config, data_dir)(
        train_step.initial_params(model_from_config(reference_config.model), reference_config.seed),
        0,
    )
    for name in results:
        key = f"references.{name}.retrieval.recall@1"
        if key in validation:
            validation_curves[name] = {0: validation[key]}
    for variant in variants:
        config = variant_config(variant)
        variant_dir = os.path.join(workdir, variant)
        logging.info(
            "Ablation %s: %s on %s for %d steps",
            variant,
            config.objectives,
            config.modalities,
            config.total_steps,
        )
        train_loop.train_and_evaluate(
            config,
            variant_dir,  # The reference rows were evaluated once, above.
            evaluate_fn=protocol.make_validation_evaluator(config, data_dir, with_references=False),
        )
        _, params, step = train_step.restore_trained_params(variant_dir)
        validation_curves[variant] = validation_curve(variant_dir)
        best_step = max(
            validation_curves[variant], key=validation_curves[variant].get, default=None
        )
        record(
            variant,
            params,
            config,
            os.path.join(variant_dir, "eval"),
            {
                "steps": step,
                "best_validation_step": best_step,
                "validation_recall@1_curve": validation_curves[variant],
            },
        )
    os.makedirs(workdir, exist_ok=True)
    table_path = os.path.join(workdir, "comparison.md")
    report.write_comparison_table(results, table_path)
    if any(validation_curves.values()):
        with open(table_path, "a", encoding="utf-8") as f:
            f.write(
                "\nValidation Recall@1 during training (the trainer's periodic evaluation; "
                "step 0 is the untrained encoder):\n\n"
            )
            f.write(report.validation_curve_table(validation_curves))
    with open(os.path.join(workdir, "comparison.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2, default=float)
    plots.plot_recall_curves(curves, os.path.join(workdir, "recall_at_k.png"))
    return results


def define_flags():
    flags.DEFINE_string("data_dir", None, "Converted shards shared by every variant.")
    flags.DEFINE_string("workdir", None, "One sub-directory per variant, plus the table.")
    flags.DEFINE_integer("steps", None, "Training steps per variant (default: the config's).")
    flags.DEFINE_list("variants", None, "Subset of variants to run (default: all nine).")


def main(argv):
    values = common.start(argv, "data_dir", "workdir")
    variants = tuple(values.variants) if values.variants else None
    run_ablation(values.data_dir, values.workdir, steps=values.steps, variants=variants)
    with open(os.path.join(values.workdir, "comparison.md"), encoding="utf-8") as f:
        print(f.read())


def run():
    common.run(define_flags, main)


if __name__ == "__main__":
    run()
