"""Train state, optimizer, and the sharded, jitted training step.

The train state is a plain dict `{"step", "params", "opt_state"}`. Its shapes come from
`jax.eval_shape` before anything is allocated; its shardings from the model's logical axis
names (`item_jax/sharding.py`). The step is `jax.jit` with explicit in/out shardings and the
state donated; it is lowered and compiled once, ahead of time (`compile_train_step`).

Each step's randomness (ITM partners, masking, dropout) is `fold_in(key(seed), step)`, so a
resumed run draws exactly what an unbroken run would have drawn.

`restore_trained_params(workdir)` is the read side for everything after training (export,
evaluation, the ablation): the run's config and its latest parameters on one device,
restored onto the abstract state built here.
"""

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from item_jax import batch as batch_lib
from item_jax import checkpoint, objectives, sharding
from item_jax.model import ItemModel, model_from_config


def learning_rate_schedule(optimizer_config, total_steps: int) -> optax.Schedule:
    """Linear warm-up to the peak, then cosine decay to `end_learning_rate_fraction`."""
    peak = optimizer_config.learning_rate
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=peak,
        warmup_steps=optimizer_config.warmup_steps,
        decay_steps=max(total_steps, optimizer_config.warmup_steps + 1),
        end_value=peak * optimizer_config.end_learning_rate_fraction,
    )


def make_optimizer(config) -> optax.GradientTransformation:
    """AdamW with global-norm clipping; no weight decay on biases, norms and 1-D vectors."""
    optimizer_config = config.optimizer
    decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)
    return optax.chain(
        optax.clip_by_global_norm(optimizer_config.grad_clip_norm),
        optax.adamw(
            learning_rate_schedule(optimizer_config, config.total_steps),
            b1=optimizer_config.b1,
            b2=optimizer_config.b2,
            weight_decay=optimizer_config.weight_decay,
            mask=decay_mask,
        ),
    )


def initial_params(model: ItemModel, seed: int) -> dict:
    """The parameters a run with `config.seed = seed` starts from (the untrained encoder)."""
    boxed = model.init({"params": jax.random.key(seed)}, *batch_lib.dummy_model_inputs(model))
    return nn.unbox(boxed)["params"]


@dataclasses.dataclass
class TrainSetup:
    """Everything the loop needs to build, restore and step the train state."""

    model: ItemModel
    optimizer: optax.GradientTransformation
    mesh: Mesh
    state_shardings: Any
    abstract_state: Any  # ShapeDtypeStructs carrying their shardings (for restore).
    init_state: Callable  # rng -> sharded state.
    batch_sharding: NamedSharding


def build_train_setup(model: ItemModel, config, mesh: Mesh) -> TrainSetup:
    """Abstract state, shardings and a jitted, sharded initialiser."""
    optimizer = make_optimizer(config)
    inputs = batch_lib.dummy_model_inputs(model)

    def init_params_boxed(rng):
        return model.init({"params": rng}, *inputs)["params"]

    boxed = jax.eval_shape(init_params_boxed, jax.random.key(0))
    with nn.logical_axis_rules(sharding.LOGICAL_AXIS_RULES):
        params_shardings = sharding.logical_to_shardings(nn.get_partition_spec(boxed), mesh)
    abstract_params = nn.unbox(boxed)
    abstract_opt_state = jax.eval_shape(optimizer.init, abstract_params)
    opt_shardings = sharding.optimizer_state_shardings(
        abstract_opt_state, params_shardings, abstract_params, mesh
    )
    replicated = NamedSharding(mesh, PartitionSpec())
    state_shardings = {"step": replicated, "params": params_shardings, "opt_state": opt_shardings}

    def init_state(rng):
        params = nn.unbox(init_params_boxed(rng))
        return {
            "step": jnp.zeros((), jnp.int32),
            "params": params,
            "opt_state": optimizer.init(params),
        }

    abstract_state = jax.tree.map(
        lambda leaf, shard: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=shard),
        jax.eval_shape(init_state, jax.random.key(0)),
        state_shardings,
    )
    jitted_init = jax.jit(init_state, out_shardings=state_shardings)
    return TrainSetup(
        model=model,
        optimizer=optimizer,
        mesh=mesh,
        state_shardings=state_shardings,
        abstract_state=abstract_state,
        init_state=jitted_init,
        batch_sharding=sharding.batch_sharding(mesh),
    )


def make_train_step(setup: TrainSetup, config) -> Callable:
    """`step(state, batch) -> (state, metrics)`, jitted with explicit shardings, state donated."""
    loss_fn = objectives.make_objective_fns(
        setup.model, config, batch_shards=sharding.data_parallel_size(setup.mesh)
    ).loss
    schedule = learning_rate_schedule(config.optimizer, config.total_steps)
    base_key = jax.random.key(config.seed)
    skip_nonfinite = not config.stop_on_nonfinite

    def train_step(state, batch):
        rng = jax.random.fold_in(base_key, state["step"])
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state["params"], batch, rng
        )
        grad_norm = optax.global_norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

        def apply_update(params_and_opt_state):
            params, opt_state = params_and_opt_state
            updates, opt_state = setup.optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state

        current = (state["params"], state["opt_state"])
        if skip_nonfinite:  # A conditional, not a select over every parameter and moment.
            params, opt_state = jax.lax.cond(finite, apply_update, lambda kept: kept, current)
        else:
            params, opt_state = apply_update(current)
        new_state = {"step": state["step"] + 1, "params": params, "opt_state": opt_state}
        metrics = dict(
            metrics,
            grad_norm=grad_norm,
            learning_rate=schedule(state["step"]),
            finite=finite.astype(jnp.float32),
        )
        return new_state, metrics

    replicated = NamedSharding(setup.mesh, PartitionSpec())
    return jax.jit(
        train_step,
        in_shardings=(setup.state_shardings, setup.batch_sharding),
        out_shardings=(setup.state_shardings, replicated),
        donate_argnums=(0,),
    )


def compile_train_step(
    setup: TrainSetup, config, compiler_options: dict | None = None
) -> jax.stages.Compiled:
    """Lowers and compiles the step once for the config's global batch.

    `compiler_options`: XLA options for this compile alone (a GPU target's, `gpu_target.py`).
    """
    jitted = make_train_step(setup, config)
    batch = batch_lib.abstract_batch(setup.model, config.global_batch_size, setup.batch_sharding)
    with jax.set_mesh(setup.mesh), nn.logical_axis_rules(sharding.LOGICAL_AXIS_RULES):
        return jitted.lower(setup.abstract_state, batch).compile(compiler_options)


def restore_trained_params(workdir: str, step: int | None = None):
    """(config, params on one device, step) of the latest (or given) checkpoint in `workdir`."""
    config = checkpoint.load_workdir_config(workdir)
    config.mesh.update(data=1, fsdp=1, tensor=1)
    mesh = sharding.make_mesh(config.mesh, jax.local_devices()[:1])
    setup = build_train_setup(model_from_config(config.model), config, mesh)
    checkpointer = checkpoint.Checkpointer(
        os.path.join(workdir, "checkpoints"), save_every_steps=1, keep=1, async_save=False
    )
    try:
        state, _ = checkpointer.restore(setup.abstract_state, step)
    finally:
        checkpointer.close()
    return config, state["params"], int(state["step"])
