"""The paired benchmark against the PyTorch peer refuses to quote figures on a busy machine."""

import os
import sys

import pytest
from conftest import small_config

from item_jax import profiling
from item_jax.benchmarks import vs_peer


def _peer_files(tmp_path):
    """Stand-ins for the peer's Python and script: they exist, and nothing runs them."""
    peer_python, peer_script = tmp_path / "python", tmp_path / "peer.py"
    peer_python.write_text("")
    peer_script.write_text("")
    return peer_python, peer_script


def test_a_loaded_machine_gets_no_figures(tmp_path):
    peer_python, peer_script = _peer_files(tmp_path)
    result = vs_peer.benchmark_vs_peer(
        "tiny.py",
        small_config(),
        peer_python=str(peer_python),
        peer_script=str(peer_script),
        max_load=0.0,
    )
    assert result["quotable"] is False and "load average" in result["refused"]
    assert "ratio_median" not in result and "item_jax_median" not in result


def _fake_clock(monkeypatch, loads):
    """Load averages in turn, one per poll; sleeping advances a fake clock."""
    now = [0.0]
    readings = iter(loads)
    monkeypatch.setattr(vs_peer.os, "getloadavg", lambda: (next(readings), 0.0, 0.0))
    monkeypatch.setattr(vs_peer.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(vs_peer.time, "sleep", lambda seconds: now.__setitem__(0, now[0] + seconds))


def test_it_waits_for_the_load_to_fall_then_runs(tmp_path, monkeypatch):
    peer_python, peer_script = _peer_files(tmp_path)
    _fake_clock(monkeypatch, [1.6, 1.3, 0.4])  # Its own last run's load, fading.
    monkeypatch.setattr(vs_peer, "_timed_run", lambda command, env: ({"examples_per_s": 4.0}, 0.0))
    result = vs_peer.benchmark_vs_peer(
        "tiny.py",
        small_config(),
        rounds=1,
        peer_python=str(peer_python),
        peer_script=str(peer_script),
        allocator="glibc",
        wait_quiet_s=60,
    )
    assert result["quotable"] is True and result["ratio_median"] == 1.0
    assert result["load_average_1min_before"] == 0.4
    assert result["waited_for_quiet_s"] == 2 * vs_peer.LOAD_POLL_SECONDS


def test_a_load_that_does_not_fall_in_time_is_refused(tmp_path, monkeypatch):
    peer_python, peer_script = _peer_files(tmp_path)
    _fake_clock(monkeypatch, [1.9] * 10)

    def must_not_run(command, env):
        raise AssertionError("ran on a busy machine")

    monkeypatch.setattr(vs_peer, "_timed_run", must_not_run)
    result = vs_peer.benchmark_vs_peer(
        "tiny.py",
        small_config(),
        peer_python=str(peer_python),
        peer_script=str(peer_script),
        wait_quiet_s=12,
    )
    assert result["quotable"] is False and "after waiting 12 s" in result["refused"]
    assert result["waited_for_quiet_s"] == 12.0
    with pytest.raises(ValueError, match="wait_quiet_s"):
        vs_peer.benchmark_vs_peer(
            "tiny.py",
            small_config(),
            peer_python=str(peer_python),
            peer_script=str(peer_script),
            wait_quiet_s=-1,
        )


def test_missing_peer_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="peer Python"):
        vs_peer.benchmark_vs_peer("tiny.py", small_config(), peer_python=str(tmp_path / "no"))


def test_peer_runs_at_the_configs_dims():
    config = small_config()
    arguments = vs_peer.peer_arguments(config)
    values = dict(zip(arguments[::2], arguments[1::2]))
    assert values == {
        "--hidden": "64",
        "--layers": "2",
        "--heads": "4",
        "--mlp": "128",
        "--image": "32",
        "--patch": "8",
        "--text": "16",
        "--vocab": "512",
        "--batch": "16",
    }


def test_foreign_cpu_is_what_other_processes_used(monkeypatch):
    clock = iter([100.0, 130.0])  # The machine was busy 30 CPU seconds ...
    children = iter([10.0, 30.0])  # ... of which the benchmark's own child used 20.
    monkeypatch.setattr(vs_peer, "_busy_seconds", lambda: next(clock))
    monkeypatch.setattr(vs_peer, "_children_seconds", lambda: next(children))
    line, foreign = vs_peer._timed_run(["python3", "-c", "print('{\"examples_per_s\": 5}')"], {})
    assert line == {"examples_per_s": 5} and foreign == pytest.approx(10.0)


def test_both_sides_run_on_the_named_allocator(tmp_path, monkeypatch):
    peer_python, peer_script = _peer_files(tmp_path)
    seen = []

    def fake_run(command, env):
        seen.append(env.get("LD_PRELOAD", ""))
        return {"examples_per_s": 10.0, "allocator": "glibc"}, 0.0

    monkeypatch.setattr(vs_peer, "_timed_run", fake_run)
    monkeypatch.setattr(vs_peer.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x/libtcmalloc_minimal.so.4")
    result = vs_peer.benchmark_vs_peer(
        "tiny.py",
        small_config(),
        rounds=1,
        peer_python=str(peer_python),
        peer_script=str(peer_script),
        allocator="glibc",
    )
    assert result["allocator"] == "glibc" and result["quotable"] is True
    assert seen == ["", ""]  # item_jax and the peer, neither with tcmalloc preloaded.
    monkeypatch.setattr(
        vs_peer,
        "_timed_run",
        lambda command, env: ({"examples_per_s": 1.0, "allocator": "tcmalloc"}, 0.0),
    )
    with pytest.raises(RuntimeError, match="ran on tcmalloc, not glibc"):
        vs_peer.benchmark_vs_peer(
            "tiny.py",
            small_config(),
            rounds=1,
            peer_python=str(peer_python),
            peer_script=str(peer_script),
            allocator="glibc",
        )


def test_a_bfloat16_pairing_runs_both_sides_in_bf16(tmp_path, monkeypatch):
    peer_python, peer_script = _peer_files(tmp_path)
    commands = []

    def fake_run(command, env):
        commands.append(command)
        if "item_jax.cli.bench" in command:
            return {"examples_per_s": 10.0, "compute_dtype": "bfloat16"}, 0.0
        return {"examples_per_s": 5.0, "autocast": "bfloat16"}, 0.0

    monkeypatch.setattr(vs_peer, "_timed_run", fake_run)
    monkeypatch.setattr(vs_peer.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    result = vs_peer.benchmark_vs_peer(
        "tiny.py",
        small_config(),
        rounds=1,
        peer_python=str(peer_python),
        peer_script=str(peer_script),
        precision="bfloat16",
    )
    assert result["precision"] == "bfloat16" and result["ratio_median"] == 2.0
    ours, theirs = commands
    assert "--config.model.compute_dtype=bfloat16" in ours
    assert theirs[:3] == [str(peer_python), vs_peer.PEER_AUTOCAST_SCRIPT, str(peer_script)]
    # A side that did not run in the asked precision is an error, not a figure.
    monkeypatch.setattr(vs_peer, "_timed_run", lambda command, env: ({"examples_per_s": 1.0}, 0.0))
    with pytest.raises(RuntimeError, match="peer ran in float32, not bfloat16"):
        vs_peer.benchmark_vs_peer(
            "tiny.py",
            small_config(),
            rounds=1,
            peer_python=str(peer_python),
            peer_script=str(peer_script),
            precision="bfloat16",
        )
    with pytest.raises(ValueError, match="precision"):
        vs_peer.benchmark_vs_peer("tiny.py", small_config(), precision="float16")


def test_the_result_names_the_host_cpu(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Example CPU 9000\n"
        "flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n\n"
        "processor\t: 1\nmodel name\t: Example CPU 9000\nflags\t\t: fpu\n"
    )
    assert profiling.host_cpu(str(cpuinfo))["model"] == "Example CPU 9000"
    assert profiling.host_cpu(str(cpuinfo))["matrix_features"] == [
        "avx2",
        "avx512f",
        "avx512_bf16",
        "amx_bf16",
        "amx_tile",
    ]
    assert profiling.host_cpu(str(tmp_path / "absent"))["model"] == "unknown"
    real_host_cpu = profiling.host_cpu
    monkeypatch.setattr(profiling, "host_cpu", lambda: real_host_cpu(str(cpuinfo)))
    monkeypatch.setattr(vs_peer, "_timed_run", lambda command, env: ({"examples_per_s": 4.0}, 0.0))
    peer_python, peer_script = _peer_files(tmp_path)
    result = vs_peer.benchmark_vs_peer(
        "tiny.py",
        small_config(),
        rounds=1,
        max_load=1e9,
        peer_python=str(peer_python),
        peer_script=str(peer_script),
    )
    assert result["quotable"] and result["host_cpu"]["model"] == "Example CPU 9000"


def test_the_default_peer_is_the_projects_own_script():
    assert vs_peer.DEFAULT_PEER_SCRIPT == os.path.join(
        os.path.dirname(vs_peer.__file__), "peer_vilt.py"
    )
    assert os.path.isfile(vs_peer.DEFAULT_PEER_SCRIPT)


@pytest.mark.slow
def test_the_peer_script_runs_and_prints_the_line_vs_peer_reads():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    tiny = dict(hidden=32, layers=1, heads=2, mlp=64, image=16, patch=8, text=8, vocab=64)
    command = [sys.executable, vs_peer.DEFAULT_PEER_SCRIPT, "--batch", "2", "--steps", "1"]
    for name, value in tiny.items():
        command += [f"--{name}", str(value)]
    line, _ = vs_peer._timed_run(command, dict(os.environ))
    assert line["peer"] == "hf-vilt-torch" and line["batch"] == 2
    # The title slots, the image's CLS and its 4 patches.
    assert line["seq_len"] == 8 + 1 + 4
    assert line["params"] > 0 and line["examples_per_s"] == pytest.approx(2 / line["step_s"])
