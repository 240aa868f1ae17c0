"""Can the encoder see at all? A supervised diagnostic, never a recipe.

  python -m item_jax.cli.bench image-probe --config demo.py --data_dir runs/demo/shards \
      [--steps 600] [--config.model.patch_stem=linear]

The config's encoder, freshly initialised, is trained *with the category as its label*
from the photo alone (every title removed through the attention mask; a linear head on
`[CLS]`; AdamW at the config's learning rate with a warm-up and cosine decay; batches of the
config's size drawn from the train split). Every `eval_every` steps the validation
accuracy is recorded. When even this cannot recover the category, no unsupervised
objective will: the image path itself is the limit (docs/experiments.md, section 7).
Prints one JSON line with the accuracy curve.
"""

import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from item_jax import batch as batch_lib
from item_jax.data import dataset_info, input_pipeline
from item_jax.model import ItemModel, model_from_config

_KEYS = ("text_tokens", "text_mask", "image", "has_image", "category_index")


def load_split(config, data_dir: str, split: str) -> dict[str, np.ndarray]:
    """A split's valid listings that have a photo, as host arrays."""
    parts = {key: [] for key in _KEYS}
    for batch, _ in input_pipeline.iterate_eval_batches(
        data_dir,
        split,
        image_size=config.model.image_size,
        max_text_len=config.model.max_text_len,
        batch_size=256,
    ):
        rows = batch["valid"].astype(bool) & batch["has_image"].astype(bool)
        for key in _KEYS:
            parts[key].append(np.asarray(batch[key])[rows])
    arrays = {key: np.concatenate(value) for key, value in parts.items()}
    if not len(arrays["image"]):
        raise ValueError(f"the {split} split of {data_dir} has no listing with a photo")
    return arrays


def probe_image_path(config, data_dir: str, *, steps: int, eval_every: int = 100) -> dict:
    """Trains the encoder + a linear category head on photos alone; the validation curve."""
    num_classes = len(dataset_info.load_dataset_info(data_dir)["categories"])
    train, validation = (load_split(config, data_dir, split) for split in ("train", "validation"))
    model = model_from_config(config.model)

    def photo_only(arrays, rows):
        empty = batch_lib.remove_titles(arrays["text_tokens"][rows], arrays["text_mask"][rows])
        return (
            jnp.asarray(empty["text_tokens"]),
            jnp.asarray(empty["text_mask"]),
            jnp.asarray(arrays["image"][rows]),
            jnp.asarray(arrays["has_image"][rows]),
        )

    encoder = nn.meta.unbox(
        model.init(jax.random.key(config.seed), *photo_only(train, np.arange(1)))["params"]
    )
    params = {
        "encoder": encoder,
        "head": {
            "kernel": jnp.zeros((config.model.hidden_dim, num_classes)),
            "bias": jnp.zeros((num_classes,)),
        },
    }
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, config.optimizer.learning_rate, min(config.optimizer.warmup_steps, steps // 2), steps
    )
    optimizer = optax.chain(
        optax.clip_by_global_norm(config.optimizer.grad_clip_norm),
        optax.adamw(schedule, weight_decay=config.optimizer.weight_decay),
    )
    opt_state = optimizer.init(params)

    def logits(params, inputs):
        cls_state = model.apply({"params": params["encoder"]}, *inputs, method=ItemModel.encode)[
            "cls_state"
        ]
        return cls_state @ params["head"]["kernel"] + params["head"]["bias"]

    @jax.jit
    def train_step(params, opt_state, inputs, labels):
        loss, grads = jax.value_and_grad(
            lambda p: optax.softmax_cross_entropy_with_integer_labels(
                logits(p, inputs), labels
            ).mean()
        )(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    predict = jax.jit(lambda params, inputs: logits(params, inputs).argmax(-1))
    rng = np.random.default_rng(config.seed)
    curve, start = {}, time.perf_counter()
    for step in range(1, steps + 1):
        rows = rng.integers(0, len(train["image"]), config.global_batch_size)
        params, opt_state, loss = train_step(
            params, opt_state, photo_only(train, rows), jnp.asarray(train["category_index"][rows])
        )
        if step % eval_every == 0 or step == steps:
            predictions = np.concatenate(
                [
                    np.asarray(
                        predict(
                            params,
                            photo_only(
                                validation,
                                np.arange(begin, min(begin + 256, len(validation["image"]))),
                            ),
                        )
                    )
                    for begin in range(0, len(validation["image"]), 256)
                ]
            )
            curve[step] = float(np.mean(predictions == validation["category_index"]))
    return {
        "benchmark": "supervised_image_probe",
        "patch_stem": config.model.patch_stem,
        "steps": steps,
        "num_classes": num_classes,
        "chance": 1.0 / max(num_classes, 1),
        "final_train_loss": float(loss),
        "validation_accuracy": curve,
        "seconds": round(time.perf_counter() - start, 1),
    }
