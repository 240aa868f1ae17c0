"""The commands start on tcmalloc where it is installed; benchmarks say which allocator ran."""

import subprocess
import sys

import pytest

from item_jax import allocator

REPORT = (
    "from item_jax import allocator; allocator.ensure_tcmalloc(); "
    "print(allocator.loaded_allocator())"
)


def test_loaded_allocator_reads_the_process_maps(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text("7f00-7f01 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6\n")
    assert allocator.loaded_allocator(str(maps)) == "glibc"
    maps.write_text(
        maps.read_text() + "7f02-7f03 r-xp 0 08:01 2 /usr/lib/x86_64-linux-gnu/"
        "libtcmalloc_minimal.so.4.5.10\n"
    )
    assert allocator.loaded_allocator(str(maps)) == "tcmalloc"
    assert allocator.loaded_allocator(str(tmp_path / "absent")) == "unknown"


def test_glibc_environment_drops_only_the_allocator_from_ld_preload():
    env = allocator.environment_with(
        "glibc", {"LD_PRELOAD": "/lib/libtcmalloc_minimal.so.4:/opt/libfoo.so", "A": "1"}
    )
    assert env == {"LD_PRELOAD": "/opt/libfoo.so", "A": "1", "ITEM_JAX_ALLOCATOR": "glibc"}
    assert "LD_PRELOAD" not in allocator.environment_with(
        "glibc", {"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}
    )
    with pytest.raises(ValueError, match="tcmalloc' or 'glibc"):
        allocator.environment_with("mimalloc", {})


def test_tcmalloc_environment_preloads_it_or_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(allocator, "find_tcmalloc", lambda: "/usr/lib/x/libtcmalloc_minimal.so.4")
    env = allocator.environment_with("tcmalloc", {"LD_PRELOAD": "/opt/libfoo.so"})
    assert env["LD_PRELOAD"] == "/usr/lib/x/libtcmalloc_minimal.so.4:/opt/libfoo.so"
    monkeypatch.setattr(allocator, "find_tcmalloc", lambda: None)
    with pytest.raises(FileNotFoundError, match="libtcmalloc-minimal4"):
        allocator.environment_with("tcmalloc", {})


@pytest.mark.skipif(
    allocator.find_tcmalloc() is None,
    reason="tcmalloc is not installed (apt-get install libtcmalloc-minimal4)",
)
def test_a_command_restarts_itself_on_tcmalloc_unless_told_not_to():
    env = allocator.environment_with("glibc")
    env.pop("_ITEM_JAX_ALLOCATOR_RESTARTED", None)
    env.pop("ITEM_JAX_ALLOCATOR")
    ran = subprocess.run(
        [sys.executable, "-c", REPORT],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert ran.stdout.split() == ["tcmalloc"], ran.stderr
    kept = subprocess.run(
        [sys.executable, "-c", REPORT],
        capture_output=True,
        text=True,
        env=dict(env, ITEM_JAX_ALLOCATOR="glibc"),
        check=True,
        timeout=120,
    )
    assert kept.stdout.split() == ["glibc"], kept.stderr
