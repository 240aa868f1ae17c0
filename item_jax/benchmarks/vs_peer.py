"""item_jax against its peer at equal dims: alternating runs, medians, and a quiet-machine guard.

  python -m item_jax.cli.bench vs-peer --config tiny.py [--rounds 3] [--steps 20] \
      [--peer_steps 10] [--peer_python /tmp/peer/bin/python] \
      [--peer_script item_jax/benchmarks/peer_vilt.py] [--allocator tcmalloc|glibc] \
      [--precision float32|bfloat16] [--wait_quiet_s 180]

The peer is Hugging Face ViLT in PyTorch with ITEm-like heads (MLM, MIM, ITM;
`benchmarks/peer_vilt.py`, run in a virtual environment of its own). Each round runs the
item_jax train-step benchmark and then the peer, as separate processes at the config's dims
(width, layers, heads, MLP, image, patch, text slots, vocabulary, global batch); item_jax
trains ITEm's five objectives (the peer has no contrastive views). The result is one JSON
line: both sides' examples/s per round and their medians, the ratio's median and range, and
the host CPU (`host_cpu`: the ratio depends on the CPU's model and matrix features).

Both sides compute in one precision (`--precision`): float32, or bfloat16 mixed precision,
where item_jax runs with `model.compute_dtype=bfloat16` and the peer under PyTorch's CPU
bf16 autocast (`benchmarks/peer_autocast.py`); both keep float32 parameters and optimizer
state. A bf16 item_jax against a float32 peer is not a pairing this benchmark makes.

Figures taken beside other work are wrong in a way that favours whichever side's thread
pool copes better, so nothing is quoted unless the machine is quiet: the 1-minute load
average must be under `max_load` at the start, and during every run the CPU time that
other processes took (the machine's busy time from /proc/stat less this benchmark's own
children) must stay under `max_foreign_cpu` of one core. Otherwise `quotable` is false, the
medians are left out, and `refused` says why. A benchmark run just before (this one's own
last pairing, say) lifts the 1-minute average for a minute or two after it ends:
`wait_quiet_s` waits up to that many seconds for the average to fall under `max_load`
before refusing, and the result says how long it waited.

Both sides run on the same memory allocator (`--allocator`; default tcmalloc when it is
installed, as the launch scripts run item_jax, else glibc's malloc; `item_jax/allocator.py`).
PyTorch gains from tcmalloc too, so comparing item_jax on tcmalloc with the peer on glibc
would flatter item_jax. Each side's own report of the allocator it ran on is checked.
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import time

from item_jax import allocator as allocator_lib
from item_jax import objectives, profiling

DEFAULT_PEER_PYTHON = "/tmp/peer/bin/python"
_BENCHMARKS_DIR = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PEER_SCRIPT = os.path.join(_BENCHMARKS_DIR, "peer_vilt.py")
PRECISIONS = ("float32", "bfloat16")
LOAD_POLL_SECONDS = 5.0  # How often `wait_for_quiet` reads the load average.
PEER_AUTOCAST_SCRIPT = os.path.join(_BENCHMARKS_DIR, "peer_autocast.py")


def _busy_seconds() -> float:
    """CPU seconds all processes on the machine have used (non-idle /proc/stat time)."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _children_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed_run(command: list[str], env: dict) -> tuple[dict, float]:
    """(the command's last JSON line, CPU seconds other processes used meanwhile)."""
    busy, ours = _busy_seconds(), _children_seconds()
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    foreign = (_busy_seconds() - busy) - (_children_seconds() - ours)
    if completed.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed ({completed.returncode}):\n{completed.stderr[-2000:]}"
        )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]), max(foreign, 0.0)


def wait_for_quiet(max_load: float, wait_s: float) -> tuple[float, float]:
    """(1-minute load average, seconds waited): polls until it is under `max_load` or
    `wait_s` seconds have passed."""
    start = time.monotonic()
    load = os.getloadavg()[0]
    while load >= max_load and time.monotonic() - start < wait_s:
        time.sleep(min(LOAD_POLL_SECONDS, max(wait_s - (time.monotonic() - start), 0.0)))
        load = os.getloadavg()[0]
    return load, time.monotonic() - start


def peer_arguments(config) -> list[str]:
    """The peer's flags for the dims of `config`."""
    m = config.model
    return [
        "--hidden",
        str(m.hidden_dim),
        "--layers",
        str(m.num_layers),
        "--heads",
        str(m.num_heads),
        "--mlp",
        str(m.mlp_dim),
        "--image",
        str(m.image_size),
        "--patch",
        str(m.patch_size),
        "--text",
        str(m.max_text_len),
        "--vocab",
        str(m.vocab_size),
        "--batch",
        str(config.global_batch_size),
    ]


def benchmark_vs_peer(
    config_spec: str,
    config,
    *,
    rounds: int = 3,
    steps: int = 20,
    peer_steps: int = 10,
    peer_python: str = DEFAULT_PEER_PYTHON,
    peer_script: str = DEFAULT_PEER_SCRIPT,
    max_load: float = 1.0,
    max_foreign_cpu: float = 0.15,
    allocator: str | None = None,
    precision: str = "float32",
    wait_quiet_s: float = 0.0,
) -> dict:
    """Alternates `rounds` item_jax and peer runs; see the module docstring."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {PRECISIONS}")
    for path, what in (
        (peer_python, "peer Python (torch, transformers)"),
        (peer_script, "peer script"),
    ):
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"{what} not found at {path}; set it up as launch/bench_vs_peer.sh says"
            )
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    if wait_quiet_s < 0:
        raise ValueError(f"wait_quiet_s must be >= 0, got {wait_quiet_s}")
    if allocator is None:
        allocator = "tcmalloc" if allocator_lib.find_tcmalloc() else "glibc"
    env = allocator_lib.environment_with(allocator, dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    load_before, waited = wait_for_quiet(max_load, wait_quiet_s)
    result = dict(
        benchmark="vs_peer",
        config=config_spec,
        allocator=allocator,
        precision=precision,
        rounds=rounds,
        steps=steps,
        peer_steps=peer_steps,
        cpu_count=os.cpu_count(),
        host_cpu=profiling.host_cpu(),
        load_average_1min_before=round(load_before, 2),
        max_load=max_load,
        waited_for_quiet_s=round(waited, 1),
        max_foreign_cpu_cores=max_foreign_cpu,
    )
    if load_before >= max_load:
        return dict(
            result,
            quotable=False,
            refused=f"1-minute load average {load_before:.2f} >= {max_load}"
            f" after waiting {waited:.0f} s: other work is running; wait for a "
            "quiet machine (or pass a longer --wait_quiet_s)",
        )
    item_jax_command = [
        sys.executable,
        "-m",
        "item_jax.cli.bench",
        "train",
        "--config",
        config_spec,
        "--steps",
        str(steps),
        f"--config.objectives={objectives.ITEM_OBJECTIVES}",
        f"--config.model.compute_dtype={precision}",
    ]
    peer_command = [peer_python, peer_script, *peer_arguments(config), "--steps", str(peer_steps)]
    if precision == "bfloat16":
        peer_command[1:1] = [PEER_AUTOCAST_SCRIPT]
    ours, theirs, disturbed = [], [], []
    for round_index in range(rounds):
        for name, command, rates in (
            ("item_jax", item_jax_command, ours),
            ("peer", peer_command, theirs),
        ):
            start = time.perf_counter()
            line, foreign = _timed_run(command, env)
            wall = time.perf_counter() - start
            rates.append(float(line["examples_per_s"]))
            if name == "item_jax" and line.get("allocator") not in (allocator, None):
                raise RuntimeError(f"item_jax ran on {line['allocator']}, not {allocator}")
            ran_in = (
                line.get("compute_dtype", precision)
                if name == "item_jax"
                else line.get("autocast", "float32")
            )
            if ran_in != precision:
                raise RuntimeError(f"{name} ran in {ran_in}, not {precision}")
            if foreign / wall > max_foreign_cpu:
                disturbed.append(
                    f"round {round_index + 1} {name}: other processes used "
                    f"{foreign / wall:.2f} cores"
                )
    ratios = [a / b for a, b in zip(ours, theirs)]
    result.update(
        item_jax_examples_per_s=ours,
        peer_examples_per_s=theirs,
        ratios=[round(r, 3) for r in ratios],
    )
    if disturbed:
        return dict(result, quotable=False, refused="; ".join(disturbed))
    return dict(
        result,
        quotable=True,
        item_jax_median=round(statistics.median(ours), 2),
        peer_median=round(statistics.median(theirs), 2),
        ratio_median=round(statistics.median(ratios), 3),
        ratio_min=round(min(ratios), 3),
        ratio_max=round(max(ratios), 3),
    )
