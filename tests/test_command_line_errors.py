"""Every command line ends a user's mistake with one `error: ...` line, not a traceback.

Each case fails at start-up (a missing path, damaged data, a bad flag), so the tests stay
fast. The traceback is printed only with `--verbose`.
"""

import os
import re
import shutil
import subprocess
import sys

import pytest
from subprocess_utils import REPO_ROOT, SMALL_CONFIG_FLAGS, run_cli

from item_jax.data import dataset_info

pytestmark = pytest.mark.faults


def _ends_with_one_error_line(result, status: int = 1) -> str:
    """The `error: ` line, asserted to be the last thing printed (the rest of a message that
    lists several shards may follow on its own lines, but no log line, no traceback)."""
    assert result.returncode == status, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = result.stderr.rstrip().splitlines()
    starts = [index for index, line in enumerate(lines) if line.startswith("error: ")]
    assert starts, result.stderr[-3000:]
    after = lines[starts[-1] + 1 :]
    assert not any(re.match(r"[IWEF]\d{4} ", line) for line in after), result.stderr[-3000:]
    return lines[starts[-1]]


@pytest.mark.slow
def test_train_names_a_missing_data_dir_and_a_truncated_shard(catalog_shards, tmp_path):
    missing = str(tmp_path / "no_shards")
    last = _ends_with_one_error_line(
        run_cli(
            "train",
            [
                "--config",
                "configs/tiny.py",
                "--workdir",
                str(tmp_path / "run"),
                "--config.data.dir",
                missing,
            ],
        )
    )
    assert f"{missing!r} has no dataset_info.json" in last and "item_jax.cli.convert" in last

    shards = tmp_path / "shards"
    shutil.copytree(catalog_shards, shards)
    info = dataset_info.load_dataset_info(str(shards))
    train_shard = shards / info["splits"]["train"]["files"][0]
    with open(train_shard, "r+b") as f:
        f.truncate(os.path.getsize(train_shard) // 2)
    result = run_cli(
        "train",
        [
            "--config",
            "configs/tiny.py",
            "--workdir",
            str(tmp_path / "run"),
            "--config.data.dir",
            str(shards),
            *SMALL_CONFIG_FLAGS,
        ],
    )
    _ends_with_one_error_line(result)
    assert (
        f"error: 1 train shard(s) of {shards} differ from what the converter wrote" in result.stderr
    )
    assert f"{train_shard}: {os.path.getsize(train_shard)} bytes" in result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_verbose_adds_the_traceback_before_the_error_line(tmp_path):
    result = run_cli(
        "train",
        [
            "--config",
            "configs/tiny.py",
            "--workdir",
            str(tmp_path / "run"),
            "--config.data.dir",
            str(tmp_path / "nothing"),
            "--verbose",
        ],
    )
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "FileNotFoundError" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("error: FileNotFoundError: ")


def test_a_bad_flag_or_config_field_is_a_usage_error(tmp_path):
    last = _ends_with_one_error_line(
        run_cli(
            "train",
            ["--config", "configs/tiny.py", "--workdir", str(tmp_path), "--config.model.widht=3"],
        ),
        status=2,
    )
    assert "--config.model.widht: the config has no field 'widht'" in last
    last = _ends_with_one_error_line(
        run_cli("verify", ["--data_dir", str(tmp_path), "--nope"]), status=2
    )
    assert "nope" in last and "--help" in last


@pytest.mark.slow
def test_evaluate_names_a_missing_workdir_and_refuses_two_sources(tmp_path):
    last = _ends_with_one_error_line(
        run_cli(
            "evaluate", ["--workdir", str(tmp_path / "no_run"), "--out", str(tmp_path / "eval")]
        )
    )
    assert "config.json not found" in last and "training workdir" in last
    last = _ends_with_one_error_line(
        run_cli("evaluate", ["--out", str(tmp_path / "eval")]), status=2
    )
    assert "exactly one of --workdir" in last


def test_embed_names_a_missing_export(tmp_path):
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("", encoding="utf-8")
    last = _ends_with_one_error_line(
        run_cli(
            "embed",
            [
                "--export",
                str(tmp_path / "no_export"),
                "--manifest",
                str(manifest),
                "--out",
                str(tmp_path / "out"),
            ],
        )
    )
    assert "no_export" in last


def test_convert_names_a_missing_manifest(tmp_path):
    last = _ends_with_one_error_line(
        run_cli(
            "convert",
            [
                "--manifest",
                str(tmp_path / "nope.jsonl"),
                "--out",
                str(tmp_path / "out"),
                "--noprogress",
            ],
        )
    )
    assert "nope.jsonl" in last


def test_verify_names_a_dir_that_is_not_a_conversion(tmp_path):
    last = _ends_with_one_error_line(run_cli("verify", ["--data_dir", str(tmp_path)]))
    assert "has no dataset_info.json" in last


def test_export_names_a_missing_workdir(tmp_path):
    last = _ends_with_one_error_line(
        run_cli(
            "export", ["--workdir", str(tmp_path / "no_run"), "--out", str(tmp_path / "export")]
        )
    )
    assert "config.json not found" in last


@pytest.mark.slow
def test_ablation_names_missing_shards_and_an_unknown_variant(tmp_path):
    last = _ends_with_one_error_line(
        run_cli(
            "ablation",
            [
                "--data_dir",
                str(tmp_path / "no_shards"),
                "--workdir",
                str(tmp_path / "ablation"),
                "--variants",
                "full",
                "--steps",
                "1",
            ],
        )
    )
    assert "no_shards" in last
    last = _ends_with_one_error_line(
        run_cli(
            "ablation",
            [
                "--data_dir",
                str(tmp_path),
                "--workdir",
                str(tmp_path / "ablation"),
                "--variants",
                "clip",
            ],
        )
    )
    assert "unknown ablation variants ['clip']" in last


_FAIL_WITH_A_COROUTINE_NEVER_AWAITED = """
async def write_fragment():
    pass
abandoned = [write_fragment()]  # Collected only as the interpreter exits.
from item_jax.cli import common
common.fail("Checkpoint: writing step 2 failed")
"""


def test_the_error_line_stays_last_when_an_abandoned_coroutine_is_collected_at_exit():
    # A failed checkpoint write leaves Orbax's fragment writers never awaited; Python
    # warns of each as it exits, after the command's own `error:` line.
    result = subprocess.run(
        [sys.executable, "-c", _FAIL_WITH_A_COROUTINE_NEVER_AWAITED],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert result.stderr.rstrip().splitlines()[-1] == "error: Checkpoint: writing step 2 failed", (
        result.stderr[-3000:]
    )
