"""Bad config values fail at start-up with a message naming the field."""

import os
import subprocess
import sys

import jax
import pytest
from conftest import small_config

from item_jax import config_check, sharding

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"model.patch_size": 7}, "config.model.patch_size"),
        ({"objectives": "itm,mlm,clip"}, "config.objectives"),
        (
            {"objectives": "mlm,contrastive", "contrastive.views": "title,audio"},
            "config.contrastive.views",
        ),
        (
            {"objectives": "mlm,contrastive", "modalities": "text", "contrastive.views": "image"},
            "config.contrastive.views",
        ),
        (
            {"objectives": "mlm,contrastive", "contrastive.temperature": 0.0},
            "config.contrastive.temperature",
        ),
        (
            {"objectives": "mlm,contrastive", "contrastive.image_crop_min_scale": 1.5},
            "config.contrastive.image_crop_min_scale",
        ),
        ({"masking.mode": "random"}, "config.masking.mode"),
        ({"masking.text_rate": 1.5}, "config.masking.text_rate"),
        ({"masking.itm_partners": "device"}, "config.masking.itm_partners"),
        ({"model.compute_dtype": "float16"}, "config.model.compute_dtype"),
        ({"modalities": "text", "objectives": "itm,mlm"}, "config.objectives"),
        ({"model.num_heads": 3}, "config.model.num_heads"),
        ({"mim_target_variance_eps": 0.0}, "config.mim_target_variance_eps"),
        ({"model.attention_implementation": "flash"}, "config.model.attention_implementation"),
        ({"model.attention_implementation": "cudnn"}, "config.model.attention_implementation"),
        ({"data.on_corrupt_record": "ignore"}, "config.data.on_corrupt_record"),
    ],
)
def test_static_checks_name_the_field(overrides, field):
    with pytest.raises(config_check.ConfigError, match=field.replace(".", r"\.")):
        config_check.check_config(small_config(**overrides))


def test_batch_must_divide_over_data_parallel_devices():
    config = small_config(global_batch_size=12, **{"mesh.data": 8})
    mesh = sharding.make_mesh(config.mesh, jax.devices())
    with pytest.raises(config_check.ConfigError, match=r"config\.global_batch_size.*12.*8"):
        config_check.check_config_against_mesh(config, mesh)


def test_mesh_must_fit_the_devices():
    config = small_config(**{"mesh.data": 3, "mesh.fsdp": 1, "mesh.tensor": 1})
    with pytest.raises(ValueError, match=r"config\.mesh"):
        sharding.make_mesh(config.mesh, jax.devices())


def test_tensor_axis_must_divide_heads():
    config = small_config(**{"mesh.data": 1, "mesh.fsdp": 1, "mesh.tensor": 8})
    mesh = sharding.make_mesh(config.mesh, jax.devices())
    with pytest.raises(config_check.ConfigError, match=r"config\.model\.num_heads"):
        config_check.check_config_against_mesh(config, mesh)


@pytest.mark.slow
def test_train_cli_fails_at_start_up_naming_the_field(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "item_jax.cli.train",
            "--config",
            "configs/tiny.py",
            "--workdir",
            str(tmp_path),
            "--config.model.patch_size=7",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )
    assert result.returncode == 1
    assert "error: config.model.patch_size" in result.stderr
    assert "Traceback" not in result.stderr
    assert "does not divide image size 64" in result.stderr
    assert not os.path.exists(tmp_path / "checkpoints")


def test_shipped_configs_load_by_name_and_by_path_alike(tmp_path, monkeypatch):
    from item_jax import configs  # pylint: disable=g-import-not-at-top

    monkeypatch.chdir(tmp_path)  # Names resolve from any working directory.
    by_name = configs.load_config("tiny.py:runlocal")
    by_path = configs.load_config(os.path.join(configs.PACKAGE_DIR, "tiny.py") + ":runlocal")
    assert by_name.to_dict() == by_path.to_dict() and by_name.total_steps == 20
    assert configs.load_config("ablation.py:no_global").objectives == "itm,mlm,mim,contrastive"
    with pytest.raises(FileNotFoundError, match="shipped configs"):
        configs.load_config("nope.py")


def test_config_checks_and_console_read_the_table_of_objectives():
    from item_jax import metrics_logger, objectives  # pylint: disable=g-import-not-at-top

    for objective in objectives.OBJECTIVES:
        assert set(objective.metrics) <= set(metrics_logger.CONSOLE_KEYS)
        for modality in objective.needs:
            other = "image" if modality == "text" else "text"
            with pytest.raises(
                config_check.ConfigError, match=f"{objective.name} needs the {modality}"
            ):
                config_check.check_config(small_config(objectives=objective.name, modalities=other))
