"""The one embedding function: host batches in, L2-normalised product embeddings out.

Evaluation (the test split and the trainer's periodic validation), an export's `embed`
and the `embed` command all call `make_embed_fn`. The batch's rows are split over the
mesh's batch axes (data x fsdp, as in training) and the embeddings come back replicated,
so in a job of many processes (a pod) every process passes the same host batch, computes
the rows of its own devices, and receives every row. Rows are padded (by repeating the
last) to `batch_size` when given, so that one shape compiles once, else to a multiple of
the data-parallel size. Parameters already on the mesh (the trainer's) are used where they
are; others (a restored checkpoint, an export) are replicated onto it once.
"""

from collections.abc import Callable

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from item_jax import batch as batch_lib
from item_jax import sharding
from item_jax.model import ItemModel, model_from_config, product_embedding_width

# (params, host batch with MODEL_INPUT_KEYS) -> float32 [rows, width] on the host.
EmbedFn = Callable[[dict, dict], np.ndarray]


def local_mesh() -> jax.sharding.Mesh:
    """Every local device on the data axis."""
    return sharding.make_mesh(dict(data=-1, fsdp=1, tensor=1), jax.local_devices())


def make_embed_fn(
    model_config, mesh: jax.sharding.Mesh | None = None, *, batch_size: int | None = None
) -> EmbedFn:
    """The jitted, sharded embedding of host batches for the model `model_config` describes."""
    return make_apply_fn(
        model_config,
        ItemModel.embed,
        product_embedding_width(model_config),
        mesh,
        batch_size=batch_size,
    )


def make_match_fn(
    model_config, mesh: jax.sharding.Mesh | None = None, *, batch_size: int | None = None
) -> EmbedFn:
    """Like `make_embed_fn`, but returns the ITM head's logits [rows, 2] of each pair."""
    return make_apply_fn(model_config, ItemModel.match_logits, 2, mesh, batch_size=batch_size)


def make_apply_fn(
    model_config,
    method,
    out_width: int,
    mesh: jax.sharding.Mesh | None = None,
    *,
    batch_size: int | None = None,
) -> EmbedFn:
    """A jitted, sharded `method(*MODEL_INPUT_KEYS) -> [rows, out_width]` over host batches."""
    model = model_from_config(model_config)
    mesh = mesh or local_mesh()
    rows = sharding.batch_sharding(mesh)
    replicated = NamedSharding(mesh, PartitionSpec())
    parallel = sharding.data_parallel_size(mesh)
    if batch_size is not None and batch_size % parallel:
        raise ValueError(
            f"batch_size {batch_size} must be a multiple of the {parallel} devices "
            "the rows are split over"
        )

    @jax.jit
    def embed(params, inputs):
        return jax.lax.with_sharding_constraint(
            model.apply(
                {"params": params},
                *(inputs[key] for key in batch_lib.MODEL_INPUT_KEYS),
                method=method,
            ),
            replicated,
        )

    placed = {}

    def on_mesh(params):
        if placed.get("source") is not params:
            devices = set(mesh.devices.flat)
            already = all(
                isinstance(leaf, jax.Array) and leaf.sharding.device_set == devices
                for leaf in jax.tree.leaves(params)
            )
            placed.update(
                source=params, value=params if already else jax.device_put(params, replicated)
            )
        return placed["value"]

    def embed_host_batch(params, host_batch):
        num_rows = len(host_batch["text_tokens"])
        if num_rows == 0:
            return np.zeros((0, out_width), np.float32)
        target = batch_size or -(-num_rows // parallel) * parallel
        if num_rows > target:
            raise ValueError(f"{num_rows} rows do not fit the fixed batch_size {target}")

        def global_array(value):
            value = np.asarray(value)
            if target > num_rows:
                value = np.concatenate([value, np.repeat(value[-1:], target - num_rows, axis=0)])
            return jax.make_array_from_callback(value.shape, rows, lambda index: value[index])

        inputs = {key: global_array(host_batch[key]) for key in batch_lib.MODEL_INPUT_KEYS}
        return np.asarray(embed(on_mesh(params), inputs))[:num_rows]

    return embed_host_batch
