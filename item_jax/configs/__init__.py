"""The configs that ship with item_jax, and the one way to load a config.

A config is a Python file with `get_config(arg=None)` returning an `ml_collections`
ConfigDict; `defaults.py` names every field. The shipped ones are tiny.py, demo.py, base.py,
large.py and ablation.py (each docstring holds its command line). They are found by bare
name from any directory, and by path as well (from the repository root `configs/` is this
folder):

  python -m item_jax.cli.train --config tiny.py:runlocal --workdir runs/smoke
  python -m item_jax.cli.train --config configs/tiny.py --workdir runs/tiny
  python -m item_jax.cli.train --config /my/team/config.py:variant --workdir ...

Every config takes `FILE.py[:VARIANT[,VARIANT...]]`: its `VARIANTS` table names what it
offers (name -> a function that edits the config, or a dict of flattened field overrides),
and `apply_variants` applies those asked for, in the table's order; a name the table lacks
is an error that lists the known ones (a config without variants takes none).

In code: `load_config("demo.py")`, `load_config("ablation.py:no_global")`. On the command
line `define_config_flag()` gives the `--config` flag, with `--config.field=value` overrides.
A config that a run stored (a workdir's or an export's `config.json`) is read back with
`upgrade_stored_config`, which fills in the fields that were added after it was written.
"""

import importlib.util
import os

import ml_collections
from absl import flags
from ml_collections import config_flags

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
SHIPPED = ("tiny.py", "demo.py", "base.py", "large.py", "ablation.py")


# Fields added after runs had already stored their configs, each with the value that such a
# run trained with: what the code did before the field existed, not today's default.
HISTORICAL_VALUES = {
    "model.attention_implementation": "",  # JAX chose the attention kernel.
    "model.block_norm": "pre",
    "model.text_embedding_norm": False,
    "model.layer_norm_epsilon": 1e-6,
    "model.gelu": "tanh",
    "model.patch_stem": "linear",  # The conv stem came later.
    "model.product_embedding": "fused",  # One pass over title and photo.
    "model.title_pooling": "cls",  # A title pass was its `[CLS]` state.
    "init.text_from": "",
    "init.vision_from": "",
    "init.encoder_from": "",
    "contrastive.cross_views": "",  # No view was set against another.
    "contrastive.cross_view_weight": 1.0,
    "contrastive.cross_only_views": "",
    "masking.itm_partners": "global",  # Partners were drawn from the whole batch.
    "same_seller_negatives": False,  # Negatives came from every seller.
    "data.num_streams": 0,
    "data.seller_buckets": 0,  # Batches of any sellers.
    "data.on_corrupt_record": "stop",
    # Before evaluators were chosen by name, every one of them ran.
    "evaluators": "retrieval,modality_balance,probe,knn,matching,references",
}


def upgrade_stored_config(stored) -> ml_collections.ConfigDict:
    """A stored config (a dict read from `config.json`, or a ConfigDict) with every field of
    `HISTORICAL_VALUES` that it lacks filled in; a current config comes back unchanged."""
    config = ml_collections.ConfigDict(
        stored.to_dict() if isinstance(stored, ml_collections.ConfigDict) else stored
    )
    for dotted, value in HISTORICAL_VALUES.items():
        *parents, field = dotted.split(".")
        block = config
        for parent in parents:
            if parent not in block:
                block[parent] = ml_collections.ConfigDict()
            block = block[parent]
        if field not in block:
            block[field] = value
    return config


def parse_variants(arg: str | None, variants, file: str) -> tuple[str, ...]:
    """`"bert,pod"` -> ("bert", "pod"); a name not in `variants` raises naming `file` and
    the known variants."""
    names = tuple(name.strip() for name in (arg or "").split(",") if name.strip())
    unknown = [name for name in names if name not in variants]
    if unknown:
        known = ", ".join(variants) if variants else "none (it takes no variant)"
        raise ValueError(
            f"{os.path.basename(file)}: unknown variant(s) {', '.join(map(repr, unknown))}; "
            f"known: {known}"
        )
    return names


def apply_variants(
    config: ml_collections.ConfigDict, arg: str | None, variants, file: str
) -> ml_collections.ConfigDict:
    """`config` with the variants that `arg` names ("a,b") applied, in `variants`' order
    (so a list means the same whatever order it is written in). A variant is a function
    that edits the config or a dict of flattened overrides ({"mesh.fsdp": 8})."""
    asked = parse_variants(arg, variants, file)
    for name, variant in variants.items():
        if name not in asked:
            continue
        if callable(variant):
            variant(config)
        else:
            config.update_from_flattened_dict(variant)
    return config


def resolve_config_path(path: str) -> str:
    """A config file's path: an existing file as given, else a shipped config by bare name."""
    if os.path.isfile(path):
        return path
    name = path if path.endswith(".py") else path + ".py"
    if os.sep not in name and os.path.isfile(os.path.join(PACKAGE_DIR, name)):
        return os.path.join(PACKAGE_DIR, name)
    raise FileNotFoundError(
        f"config file {path!r} not found (neither a file nor one of the shipped configs "
        f"{', '.join(SHIPPED)})"
    )


def load_config(spec: str) -> ml_collections.ConfigDict:
    """`"tiny.py"`, `"base.py:bert,pod"` or `"/path/x.py:arg"` -> `get_config(arg)`."""
    path, colon, arg = spec.partition(":")
    path = resolve_config_path(path)
    module_spec = importlib.util.spec_from_file_location(
        "item_jax_config_" + os.path.basename(path)[:-3], path
    )
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    # As ml_collections does: `get_config()` without a colon, `get_config(arg)` with one.
    return module.get_config(arg) if colon else module.get_config()


class _ConfigParser(flags.ArgumentParser):
    """Parses `--config SPEC` with `load_config` (so shipped configs are found by name)."""

    def __init__(self, lock_config: bool):
        self._lock_config = lock_config

    def parse(self, argument):
        try:
            config = load_config(argument)
        except FileNotFoundError as error:  # absl reports a ValueError as a flag error.
            raise ValueError(str(error)) from error
        if self._lock_config:
            config.lock()
        return config

    def flag_type(self):
        return "config object"


def define_config_flag(
    name: str = "config",
    *,
    lock_config: bool = True,
    help_string: str = "Config file or shipped config name "
    "(tiny.py, demo.py, base.py, large.py, "
    "ablation.py), with :VARIANT[,VARIANT...].",
) -> flags.FlagHolder:
    """The `--config` flag of every command line (overrides: `--config.total_steps=200`)."""
    holder = config_flags.DEFINE_config_file(name, None, help_string, lock_config=lock_config)
    flags.FLAGS[name].parser = _ConfigParser(lock_config)
    return holder
