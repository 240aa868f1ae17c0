"""Configs: stored configs of older runs load with the values those runs trained with, and
loading a config file needs no JAX."""

import importlib
import json
import subprocess
import sys

import pytest

from item_jax import checkpoint, configs
from item_jax.configs import defaults


def _write_workdir_config(workdir, stored: dict) -> None:
    workdir.mkdir(exist_ok=True)
    (workdir / "config.json").write_text(json.dumps(stored))


def _parent_and_field(tree, dotted):
    """The block holding the last field of `dotted`, and that field ("model.gelu")."""
    *parents, field = dotted.split(".")
    for parent in parents:
        tree = tree[parent]
    return tree, field


def test_an_old_workdir_config_loads_with_the_historical_values(tmp_path):
    stored = defaults.default_config().to_dict()
    for dotted in configs.HISTORICAL_VALUES:
        block, field = _parent_and_field(stored, dotted)
        del block[field]
    del stored["init"]  # Runs before pretrained starts had no init block at all.
    _write_workdir_config(tmp_path, stored)

    config = checkpoint.load_workdir_config(str(tmp_path))

    for dotted, value in configs.HISTORICAL_VALUES.items():
        block, field = _parent_and_field(config, dotted)
        assert block[field] == value, dotted
    assert config.model.patch_stem == "linear"
    assert config.contrastive.cross_views == ""
    assert config.model.hidden_dim == stored["model"]["hidden_dim"]


def test_a_current_workdir_config_round_trips_unchanged(tmp_path):
    stored = json.loads(defaults.default_config().to_json())
    stored["model"]["patch_stem"] = "conv"
    stored["contrastive"]["cross_views"] = "title-image"
    _write_workdir_config(tmp_path, stored)
    assert checkpoint.load_workdir_config(str(tmp_path)).to_dict() == stored


def test_every_historical_field_is_a_current_field():
    current = defaults.default_config()
    for dotted in configs.HISTORICAL_VALUES:
        block, field = _parent_and_field(current, dotted)
        assert field in block, dotted


def test_loading_a_config_does_not_import_jax():
    code = (
        "import sys\n"
        "from item_jax import configs\n"
        "configs.load_config('demo.py')\n"
        "import item_jax.configs.demo\n"
        "assert 'jax' not in sys.modules, sorted(m for m in sys.modules if 'jax' in m)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("spec", ["tiny.py", "demo.py", "base.py", "large.py", "ablation.py"])
def test_shipped_configs_load(spec):
    assert configs.load_config(spec).model.hidden_dim > 0


def test_variants_combine_in_the_tables_order_and_unknown_ones_are_named():
    assert configs.load_config("base.py:bert,pod").to_dict() == (
        configs.load_config("base.py:pod,bert").to_dict()
    )
    assert configs.load_config("tiny.py:runlocal").total_steps == 20
    assert configs.load_config("ablation.py").to_dict() == (
        configs.load_config("ablation.py:full").to_dict()
    )
    with pytest.raises(ValueError, match=r"tiny\.py: unknown variant\(s\) 'nope'; known: runlocal"):
        configs.load_config("tiny.py:runlocal,nope")
    for no_variants in ("demo.py", "large.py"):
        with pytest.raises(ValueError, match="takes no variant"):
            configs.load_config(f"{no_variants}:runlocal")


def test_every_shipped_config_lists_its_variants():
    for name in configs.SHIPPED:
        module = importlib.import_module(f"item_jax.configs.{name[:-3]}")
        assert isinstance(module.VARIANTS, dict), name
