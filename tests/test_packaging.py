"""An installed wheel runs the main job from any directory (configs ship in the package)."""

import os
import shutil
import subprocess
import sys

import pytest
from subprocess_utils import REPO_ROOT, child_xla_flags


@pytest.fixture(scope="module")
def installed_package(tmp_path_factory):
    """The package built as a wheel from a copy of the sources, installed into a folder."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    shutil.copytree(
        os.path.join(REPO_ROOT, "item_jax"),
        source / "item_jax",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(os.path.join(REPO_ROOT, name), source / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(root / "dist"),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheels = list((root / "dist").glob("item_jax-*.whl"))
    assert len(wheels) == 1, wheels
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(root / "site"),
            str(wheels[0]),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return root / "site"


def _run_installed(site, args, cwd):
    env = dict(os.environ, PYTHONPATH=str(site), JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
    env["XLA_FLAGS"] = child_xla_flags()
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_wheel_holds_the_configs_and_imports_from_where_it_was_installed(
    installed_package, tmp_path
):
    completed = _run_installed(
        installed_package,
        [
            "-c",
            (
                "import item_jax, item_jax.configs as c; print(item_jax.__file__); "
                "print(c.load_config('ablation.py:no_global').objectives)"
            ),
        ],
        tmp_path,
    )
    assert completed.returncode == 0, completed.stderr
    location, objectives = completed.stdout.split()
    assert location.startswith(str(installed_package))
    assert objectives == "itm,mlm,mim,contrastive"


@pytest.mark.slow
def test_the_installed_main_job_runs_end_to_end_from_another_directory(installed_package, tmp_path):
    completed = _run_installed(
        installed_package,
        [
            "-m",
            "item_jax.cli.main_job",
            "--workdir",
            "job",
            "--num_products",
            "24",
            "--listings_per_product",
            "3",
            "--steps",
            "2",
        ],
        tmp_path,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "vs untrained" in completed.stdout
    assert (tmp_path / "job" / "eval" / "report.md").is_file()
    assert (tmp_path / "job" / "export" / "params.msgpack").is_file()
