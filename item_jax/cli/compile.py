"""Compiles the train step for a TPU slice or NVIDIA GPUs on this machine: does it fit, what
does it cost.

  python -m item_jax.cli.compile --config base.py:pod --topology v5e-256 [--num_slices N] \
      [--config.global_batch_size B] [--show_shardings] [--max_batch]
  python -m item_jax.cli.compile --config base.py:pod --topology h100-16

The same setup and step code as `train`, compiled ahead of time for compile-only devices
(libtpu for TPUs, JAX's CUDA plugin for GPUs: test extras, `pip install -r
requirements-dev.txt`). It prints a table and one JSON line: memory per chip against the
chip's memory, XLA's FLOPs and bytes with a roofline lower bound on the step time, and the
collectives in the compiled step (`item_jax/aot_report.py`). A step that does not fit exits
1 naming the shortfall and the knobs that change it; `--max_batch` finds the largest global
batch that fits.
TPU topologies: v4-N and v5p-N (N TensorCores, as Cloud TPU names them), v5e-N (or
v5litepod-N) and v6e-N (N chips). GPU targets (`item_jax/gpu_target.py`): h100-N, h200-N
and a100-N (80 GB, SXM), N GPUs: 1, 2 or 4 on one host, or a multiple of 8 (hosts of 8).
"""

import json
import sys

from absl import flags

from item_jax import aot_report, configs, gpu_target
from item_jax.cli import common

GIB = 2**30


def define_flags():
    configs.define_config_flag()
    flags.DEFINE_string(
        "topology",
        None,
        "Cloud TPU slice (v5e-256, v4-32, v5p-128, v6e-64) or GPUs (h100-8: one host of 8 "
        "H100, h100-16: two hosts; h200-N, a100-N).",
    )
    flags.DEFINE_integer(
        "num_slices",
        1,
        "TPU slices joined over the data-centre network (the mesh's data axis spans them).",
    )
    flags.DEFINE_bool("show_shardings", False, "Print each parameter's partition spec.")
    flags.DEFINE_bool(
        "max_batch",
        False,
        "Find the largest global batch that fits (bisection; one compile per try).",
    )


def _gib(num_bytes) -> str:
    return "?" if num_bytes is None else f"{num_bytes / GIB:.2f}"


def _device_kind(report: dict) -> tuple[bool, str]:
    """(whether the report is for GPUs, the word for one device: "GPU" or "chip")."""
    gpu = report.get("platform") == "gpu"
    return gpu, "GPU" if gpu else "chip"


def format_report(report: dict) -> str:
    """The human-readable table of a compile report."""
    memory = report["memory"]
    mesh = " ".join(f"{axis}={size}" for axis, size in report["mesh"].items())
    gpu, unit = _device_kind(report)
    where = (
        f"{report['chips']} GPUs"
        if gpu
        else f"{report['num_slices']} slice(s): {report['chips']} chips, {report['hosts']} hosts"
    )
    lines = [
        f"train step for {report['topology']} ({report['topology_name']}: {where}), mesh "
        f"{mesh}, global batch {report['global_batch_size']}, {report['parameters']:,} "
        f"parameters; compiled in {report['compile_s']} s",
        f"{'memory per ' + unit:<44}{'GiB':>10}",
        f"  {'parameters':<42}{_gib(memory['params_bytes']):>10}",
        f"  {'optimizer state':<42}{_gib(memory['opt_state_bytes']):>10}",
        f"  {'batch':<42}{_gib(memory['batch_bytes']):>10}",
        f"  {'temporaries (XLA)':<42}{_gib(memory.get('temp_bytes')):>10}",
    ]
    if "total_bytes" in memory:
        lines.append(
            f"  {'total (XLA: arguments + outputs - donated':<42}{_gib(memory['total_bytes']):>10}"
        )
        lines.append(f"  {' + temporaries + code)':<42}")
    verdict = "fits" if report["fits"] else f"over by {_over(memory)} GiB"
    memory_name = (
        f"memory of one {report['chip']} GPU" if gpu else f"HBM of one {report['chip']} chip"
    )
    lines.append(f"  {memory_name:<42}{_gib(memory['hbm_bytes']):>10}   {verdict}")
    if "default_pool_bytes" in memory and "total_bytes" in memory:
        pool = memory["default_pool_bytes"]
        lines.append(
            f"  {'JAX default GPU pool (' + _percent(pool, memory['hbm_bytes']) + ' of it)':<42}"
            f"{_gib(pool):>10}   "
            + ("fits" if memory["total_bytes"] <= pool else "over: raise XLA_CLIENT_MEM_FRACTION")
        )
    cost = report.get("cost")
    if cost:
        source = (
            "XLA's HLO cost analysis of the optimized per-GPU program, its cuBLAS and cuDNN "
            "calls counted from their shapes"
            if gpu
            else "XLA's cost analysis of the per-chip program"
        )
        lines += [
            f"cost ({source}; bounds, not measurements)",
            f"  {'FLOPs per ' + unit + ' / per step':<35}{cost['flops_per_chip']:.3e} / "
            f"{cost['flops_per_step']:.3e}",
            f"  {'bytes accessed per ' + unit:<35}{cost['bytes_accessed_per_chip']:.3e}",
            f"  roofline step time, lower bound    {cost['step_lower_bound_s'] * 1e3:.2f} ms "
            f"({cost['bound_by']}-bound: FLOPs/peak {cost['compute_bound_s'] * 1e3:.2f} ms, "
            f"bytes/{'memory' if gpu else 'HBM'} bandwidth {cost['memory_bound_s'] * 1e3:.2f} ms; "
            "communication not counted)",
            f"  at that bound, at most             {cost['max_examples_per_s']:,.0f} examples/s, "
            f"MFU {cost['max_mfu']:.0%} (the trainer's counted model FLOPs)",
        ]
    if report.get("collectives"):
        lines.append(
            f"{'collectives in the compiled step':<34}{'count':>8}{'MiB per ' + unit:>16}"
            "   by devices per group: count (MiB)"
        )
        for opcode, entry in report["collectives"].items():
            groups = ", ".join(
                f"{size}: {part['count']} ({part['bytes'] / 2**20:.1f})"
                for size, part in entry.get("by_group_size", {}).items()
            )
            lines.append(
                f"  {opcode:<32}{entry['count']:>8}{entry['bytes'] / 2**20:>16.1f}   "
                f"{groups}".rstrip()
            )
    return "\n".join(lines)


def _percent(part: int, whole: int) -> str:
    return f"{part / whole:.0%}"


def _over(memory: dict) -> str:
    shortfall = memory.get("shortfall_bytes")
    prefix = "at least " if memory.get("shortfall_is_lower_bound") else ""
    return prefix + _gib(shortfall)


def knobs_message(report: dict, config) -> str:
    """Why it does not fit, and the config fields that change it."""
    memory, mesh = report["memory"], report["mesh"]
    per_chip = config.global_batch_size // (mesh["data"] * mesh["fsdp"])
    detail = f" ({report['xla_error']})" if report.get("xla_error") else ""
    gpu, unit = _device_kind(report)
    memory_name = (
        f"{report['chip']} GPU's {_gib(memory['hbm_bytes'])} GiB memory"
        if gpu
        else f"{report['chip']} chip's {_gib(memory['hbm_bytes'])} GiB HBM"
    )
    return "\n".join(
        [
            f"error: the train step does not fit one {memory_name}: over by "
            f"{_over(memory)} GiB{detail}.",
            "What changes it:",
            f"  --config.mesh.fsdp (now {mesh['fsdp']}): shards the parameters and optimizer "
            f"state (now {_gib(memory['params_bytes'] + memory['opt_state_bytes'])} GiB per "
            f"{unit}) over more {unit}s",
            f"  --config.global_batch_size (now {config.global_batch_size}, {per_chip} per "
            f"{unit}): activations grow with it; --max_batch finds the largest that fits",
            f"  --config.model.remat=True (now {config.model.remat}): recompute each block in the "
            "backward pass instead of keeping its activations",
            f"  --config.model.compute_dtype=bfloat16 (now {config.model.compute_dtype}): "
            "bf16 activations",
            "  bf16 optimizer state: not supported (AdamW's moments are float32, as the "
            "parameters)",
        ]
    )


def _json(report: dict, show_shardings: bool) -> str:
    shown = {
        key: value for key, value in report.items() if show_shardings or key != "param_shardings"
    }
    return json.dumps(shown)


def main(argv):
    values = common.start(argv, "config", "topology")
    config = values.config
    if gpu_target.is_gpu_target(values.topology):
        gpu_target.prepare_environment()  # Before anything starts JAX's backends.
    try:
        if values.max_batch:
            log = lambda line: print(line, file=sys.stderr, flush=True)
            best, report = aot_report.max_global_batch(
                config, values.topology, values.num_slices, log=log
            )
            report["max_global_batch_size"] = best
        else:
            report = aot_report.compile_report(config, values.topology, values.num_slices)
    except (ValueError, RuntimeError) as error:
        if type(error).__name__ == "JaxRuntimeError":
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    print(format_report(report))
    if values.show_shardings and "param_shardings" in report:
        print("parameter partition specs (mesh axes data, fsdp, tensor)")
        for path, spec in report["param_shardings"].items():
            print(f"  {path:<60}{spec}")
    if values.max_batch:
        print(f"largest global batch that fits: {report['max_global_batch_size'] or 'none'}")
    print(_json(report, values.show_shardings), flush=True)
    if not report["fits"] or (values.max_batch and not report["max_global_batch_size"]):
        print(knobs_message(report, config), file=sys.stderr)
        sys.exit(1)


def run():
    common.run(define_flags, main)


if __name__ == "__main__":
    run()
