"""Test session set-up: 8 CPU host devices, set before JAX initialises.

The session (and the training subprocesses it starts) share one persistent XLA cache in a
fresh temporary folder: the many tests that compile the same small step compile it once.
"""

import os
import tempfile

# The tests' programs are tiny and mostly compiled once, so XLA:CPU's compile time, not the
# speed of the code it makes, is what the suite waits on: LLVM's optimisation is turned down
# here (the package never sets these flags; docs/performance.md, "The test suite's time").
# Child processes get them too (subprocess_utils), so that a run resumed in one process
# compiles the very program of the run it is compared with in another.
FAST_COMPILE_XLA_FLAGS = (
    "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
)
if FAST_COMPILE_XLA_FLAGS not in os.environ.get("XLA_FLAGS", ""):  # Once, not per worker.
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "")
        + " --xla_force_host_platform_device_count=8 "
        + FAST_COMPILE_XLA_FLAGS
    ).strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="item_jax_xla_"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import pytest  # noqa: E402  (after the environment above, which JAX reads at import)


def small_config(**overrides):
    """The tiny config shrunk further for tests: 2 layers, width 64, batch 16.

    It trains ITEm's five objectives (the paper's set); tests of the default recipe's
    contrastive extension ask for it (`objectives=DEFAULT_OBJECTIVES`), which keeps the many
    plumbing tests at one encoder pass a step.
    """
    from item_jax import objectives  # pylint: disable=g-import-not-at-top
    from item_jax.configs import defaults as config_defaults  # pylint: disable=g-import-not-at-top

    config = config_defaults.default_config()
    config.objectives = objectives.ITEM_OBJECTIVES
    config.model.update(
        image_size=32,
        patch_size=8,
        max_text_len=16,
        vocab_size=512,
        num_layers=2,
        hidden_dim=64,
        num_heads=4,
        mlp_dim=128,
        embed_dim=32,
    )
    config.global_batch_size = 16
    config.total_steps = 20
    config.optimizer.warmup_steps = 5
    config.optimizer.learning_rate = 1e-3
    config.log_every_steps = 1
    config.checkpoint_every_steps = 10
    config.data.shuffle_buffer = 64
    config.update_from_flattened_dict(overrides)
    return config


@pytest.fixture(scope="session")
def catalog_shards(tmp_path_factory):
    """The embedded catalog (48 products x 3 listings), converted once per session."""
    from item_jax.catalogs import synthetic as synthetic_catalog
    from item_jax.data import convert  # pylint: disable=g-import-not-at-top

    root = tmp_path_factory.mktemp("catalog")
    manifest = synthetic_catalog.generate_catalog(
        root / "catalog", num_products=48, listings_per_product=3, image_size=48
    )
    shard_dir = root / "shards"
    convert.convert_catalog(
        str(manifest),
        str(shard_dir),
        image_size=32,
        vocab_size=512,
        num_workers=1,
        show_progress=False,
    )
    return str(shard_dir)


@pytest.fixture(scope="session")
def trained_workdir(catalog_shards, tmp_path_factory):
    """A small model trained for 6 steps on `catalog_shards` (checkpoint at step 6)."""
    from item_jax import train_loop  # pylint: disable=g-import-not-at-top

    workdir = str(tmp_path_factory.mktemp("run"))
    train_loop.train_and_evaluate(
        small_config(total_steps=6, **{"data.dir": catalog_shards}), workdir
    )
    return workdir
