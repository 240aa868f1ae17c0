"""Which memory allocator the process runs on, and where tcmalloc is.

XLA's CPU backend takes each step's large temporary buffers from malloc. glibc's malloc
hands blocks above its mmap threshold (at most 32 MiB) back to the kernel when they are
freed, so every step faults its buffers in again and the kernel zeroes them: on the tiny
config a fifth of the step's CPU time went to that (docs/performance.md). tcmalloc (Debian's
`libtcmalloc-minimal4`, which `launch/setup_env.sh` installs) keeps freed memory for reuse.

It has to be loaded before the program starts (`LD_PRELOAD`), so every item_jax command
line starts itself again with it preloaded when it is installed and not yet loaded
(`ensure_tcmalloc`, from `item_jax/cli/common.py`); `ITEM_JAX_ALLOCATOR=glibc` keeps glibc's
malloc. The benchmarks report which allocator they ran on, and `vs-peer` runs both sides
on the same one.
"""

import glob
import os
import sys

TCMALLOC_LIBRARY = "libtcmalloc_minimal.so.4"
ALLOCATOR_VARIABLE = "ITEM_JAX_ALLOCATOR"  # "glibc": never preload tcmalloc.
# tcmalloc reports every allocation above 1 GiB on stderr by default; a base-size step's
# buffers are legitimately that large.
_QUIET_LARGE_ALLOCATIONS = {"TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": str(1 << 40)}
_SEARCH_PATTERNS = (
    f"/usr/lib/*-linux-gnu/{TCMALLOC_LIBRARY}",
    f"/usr/lib/{TCMALLOC_LIBRARY}",
    f"/usr/lib64/{TCMALLOC_LIBRARY}",
    f"/usr/local/lib/{TCMALLOC_LIBRARY}",
)


def find_tcmalloc() -> str | None:
    """The path of tcmalloc's shared library on this machine, or None."""
    for pattern in _SEARCH_PATTERNS:
        matches = sorted(glob.glob(pattern))
        if matches:
            return matches[0]
    return None


def loaded_allocator(maps_path: str = "/proc/self/maps") -> str:
    """ "tcmalloc", "jemalloc" or "glibc": the allocator mapped into this process."""
    try:
        with open(maps_path, encoding="utf-8", errors="replace") as maps:
            text = maps.read()
    except OSError:
        return "unknown"
    for name in ("tcmalloc", "jemalloc"):
        if f"lib{name}" in text:
            return name
    return "glibc"


def environment_with(allocator: str, env: dict | None = None) -> dict:
    """A copy of `env` (default: os.environ) that runs a child process on `allocator`.

    "tcmalloc" preloads it (error if it is not installed); "glibc" removes any preloaded
    allocator and sets ITEM_JAX_ALLOCATOR=glibc, so that an item_jax command stays on it.
    """
    env = dict(os.environ if env is None else env)
    kept = [
        entry
        for entry in env.get("LD_PRELOAD", "").split(":")
        if entry and "tcmalloc" not in entry and "jemalloc" not in entry
    ]
    if allocator == "tcmalloc":
        library = find_tcmalloc()
        if library is None:
            raise FileNotFoundError(
                f"{TCMALLOC_LIBRARY} not found; install Debian's libtcmalloc-minimal4 "
                "(launch/setup_env.sh does) or pass --allocator glibc"
            )
        kept.insert(0, library)
        for name, value in _QUIET_LARGE_ALLOCATIONS.items():
            env.setdefault(name, value)
    elif allocator == "glibc":
        env[ALLOCATOR_VARIABLE] = "glibc"  # An item_jax child must not restart on tcmalloc.
    else:
        raise ValueError(f"allocator must be 'tcmalloc' or 'glibc', got {allocator!r}")
    if kept:
        env["LD_PRELOAD"] = ":".join(kept)
    else:
        env.pop("LD_PRELOAD", None)
    return env


def ensure_tcmalloc() -> None:
    """Starts this program again with tcmalloc preloaded, when that is possible and wanted.

    Does nothing when tcmalloc is already loaded, is not installed, `ITEM_JAX_ALLOCATOR` is
    "glibc", or this process was itself started by this function (no loop). The new process
    has the same pid, arguments and environment plus `LD_PRELOAD`.
    """
    if (
        os.environ.get(ALLOCATOR_VARIABLE, "tcmalloc") == "glibc"
        or os.environ.get("_ITEM_JAX_ALLOCATOR_RESTARTED")
        or not sys.platform.startswith("linux")
        or loaded_allocator() == "tcmalloc"
        or find_tcmalloc() is None
    ):
        return
    env = environment_with("tcmalloc")
    env["_ITEM_JAX_ALLOCATOR_RESTARTED"] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
