"""Can the trainer learn at all? Every objective memorises one fixed batch.

  python -m item_jax.cli.bench memorise --config configs/ablation.py --data_dir runs/demo/shards \
      [--examples 16 --steps 300]

A few listings are trained on for a few hundred steps with the real step (masks, ITM
partners and corruption redrawn every step from the step's key). A model that can learn
drives MLM, GMLM and ITM accuracy towards 1 and the MIM / GMIM errors to a small fraction of
their start; a broken head, a wrong mask or misaligned targets stay near chance. Prints one
JSON line: each objective's loss and accuracy at the start and at the end (the mean over the
last `window` steps), plus whether `check_memorised`'s thresholds hold.
"""

import time

import jax
import numpy as np

from item_jax import objectives, sharding, train_step
from item_jax.data import input_pipeline
from item_jax.model import model_from_config

# What "memorised" means (the tests and the command use the same thresholds).
MIN_ACCURACY = 0.9
MAX_PIXEL_LOSS_FRACTION = 0.35


def first_listings(config, data_dir: str, num_examples: int, split: str = "train") -> dict:
    """The split's first `num_examples` listings (file order) as one host batch."""
    batch, _ = next(
        input_pipeline.iterate_eval_batches(
            data_dir,
            split,
            image_size=config.model.image_size,
            max_text_len=config.model.max_text_len,
            batch_size=num_examples,
        )
    )
    if int(batch["valid"].sum()) < num_examples:
        raise ValueError(f"the {split} split of {data_dir} has fewer than {num_examples} listings")
    return batch


def memorise(config, batch: dict, *, steps: int, window: int = 10) -> dict:
    """Trains `config` on the one `batch` for `steps` steps; returns start and end metrics."""
    config = config.copy_and_resolve_references()
    config.total_steps = steps
    config.global_batch_size = len(batch["valid"])
    # One device: this checks learning, not sharding (tests/test_train_step.py does that).
    config.mesh.update(data=1, fsdp=1, tensor=1)
    mesh = sharding.make_mesh(config.mesh, jax.devices()[:1])
    model = model_from_config(config.model)
    setup = train_step.build_train_setup(model, config, mesh)
    step_fn = train_step.make_train_step(setup, config)
    state = setup.init_state(jax.random.key(config.seed))
    device_batch = jax.device_put(batch, setup.batch_sharding)
    history = []
    start = time.perf_counter()
    with jax.set_mesh(mesh):
        for _ in range(steps):
            state, metrics = step_fn(state, device_batch)
            history.append(metrics)
    history = [{key: float(value) for key, value in m.items()} for m in jax.device_get(history)]
    keys = [key for key in history[0] if key.endswith(("_loss", "_accuracy")) or key == "loss"]
    return {
        "objectives": list(objectives.enabled_objectives(config)),
        "examples": config.global_batch_size,
        "steps": steps,
        "window": window,
        "seconds": round(time.perf_counter() - start, 1),
        "start": {key: history[0][key] for key in keys},
        "end": {key: float(np.mean([m[key] for m in history[-window:]])) for key in keys},
    }


def check_memorised(result: dict) -> list[str]:
    """The objectives that did not memorise the batch (empty: all did)."""
    failures = []
    start, end = result["start"], result["end"]
    for name in result["objectives"]:
        if name in ("itm", "mlm", "gmlm"):
            accuracy = end[f"{name}_accuracy"]
            if accuracy < MIN_ACCURACY:
                failures.append(f"{name} accuracy {accuracy:.3f} < {MIN_ACCURACY}")
        else:
            fraction = end[f"{name}_loss"] / start[f"{name}_loss"]
            if fraction > MAX_PIXEL_LOSS_FRACTION:
                failures.append(
                    f"{name} loss fell only to {fraction:.2f} of its start "
                    f"(> {MAX_PIXEL_LOSS_FRACTION})"
                )
    return failures
