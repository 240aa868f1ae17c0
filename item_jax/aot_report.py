"""Compiles the real train step for a TPU slice or a GPU cluster on any machine, and reports
what it needs.

The step is the trainer's own (`train_step.build_train_setup` + `compile_train_step`, the
mesh from `sharding.make_mesh`), compiled ahead of time for compile-only devices: libtpu's
for a TPU slice (`item_jax/tpu_topology.py`), JAX's CUDA plugin's for NVIDIA GPUs
(`item_jax/gpu_target.py`, with its XLA options). The report, per chip (per GPU):
  * memory: parameters, optimizer state and batch (their shards, from the abstract state),
    XLA's temporaries and its total (arguments + outputs - donated + temporaries + code),
    against the chip's HBM (`item_jax/accelerators.py`);
  * cost: XLA's cost analysis of the partitioned (per-chip) program, its FLOPs and bytes
    accessed, and a roofline lower bound on the step time: max(FLOPs / bf16 peak, bytes /
    HBM bandwidth). It ignores communication and is a bound, never a measurement (XLA's
    own `optimal_seconds` is not used: it came back negative for this step). The CUDA
    plugin's compile-only executable has no cost analysis; for a GPU target the figures are
    XLA's HLO cost analysis (run by the CPU client) of the optimized GPU program, with its
    cuBLAS and cuDNN calls, which that analysis counts as nothing, counted from their
    shapes (`gpu_target.library_call_cost`);
  * the collectives in the compiled program (`item_jax/hlo_collectives.py`).
A step that cannot fit is not a traceback: XLA's TPU compiler refuses it (RESOURCE_EXHAUSTED)
and the report says so, with the shortfall XLA names. XLA:GPU compiles it anyway; the report
then compares XLA's total with the GPU's memory.
"""

import math
import re
import time

import jax

from item_jax import (
    config_check,
    gpu_target,
    hlo_collectives,
    profiling,
    sharding,
    tpu_topology,
    train_step,
)
from item_jax.batch import abstract_batch
from item_jax.model import model_from_config

GIB = 2**30
MAX_BATCH_MULTIPLE = 2**16  # --max_batch stops doubling here (the data-parallel size x this).
# --max_batch's bisection stops once the largest batch that fits is known to within this
# fraction of it: each try is a full compile (minutes for a pod config), and the last few
# percent of a batch are not worth a dozen more.
MAX_BATCH_TOLERANCE = 1 / 16
# JAX's GPU client preallocates this fraction of a GPU's memory for XLA unless told otherwise
# (JAX's documentation, "GPU memory allocation").
JAX_GPU_DEFAULT_MEMORY_FRACTION = 0.75
_SIZE = r"([0-9.]+)\s*([KMGT]?)i?B?"
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
# XLA:TPU's out-of-memory messages (two wordings seen across versions).
_USED_OF = re.compile(
    r"Used " + _SIZE + r" of " + _SIZE + r" hbm.*?Exceeded hbm capacity by " + _SIZE, re.S
)
_TEMPORARIES = re.compile(
    r"HLO temporaries \(" + _SIZE + r"\) exceeds available HBM \(" + _SIZE + r"\)"
)


def _size(number: str, unit: str) -> int:
    return int(float(number) * _UNITS[unit])


def shard_bytes(tree) -> int:
    """Bytes one chip holds of a tree of ShapeDtypeStructs with shardings (the fullest shard)."""
    return sum(
        math.prod(leaf.sharding.shard_shape(leaf.shape)) * leaf.dtype.itemsize
        for leaf in jax.tree.leaves(tree)
    )


def parse_out_of_memory(message: str) -> dict:
    """XLA's out-of-memory message -> required / available / shortfall bytes (what it gives)."""
    match = _USED_OF.search(message)
    if match:
        used, available, over = (_size(*match.groups()[i : i + 2]) for i in (0, 2, 4))
        return dict(
            required_bytes=used,
            available_bytes=available,
            shortfall_bytes=over,
            shortfall_is_lower_bound=False,
        )
    match = _TEMPORARIES.search(message)
    if match:
        temporaries, available = _size(*match.groups()[0:2]), _size(*match.groups()[2:4])
        # Temporaries alone exceed the HBM; the state and batch come on top.
        return dict(
            temp_bytes=temporaries,
            available_bytes=available,
            shortfall_bytes=temporaries - available,
            shortfall_is_lower_bound=True,
        )
    return dict(shortfall_bytes=None, shortfall_is_lower_bound=True)


def process_count(devices) -> int:
    """Hosts of the slice(s): one training process per host."""
    return len({(getattr(device, "slice_index", 0), device.process_index) for device in devices})


def batch_unit(config, mesh, processes: int) -> int:
    """The global batch must be a multiple of this (devices, processes, streams)."""
    unit = math.lcm(sharding.data_parallel_size(mesh), processes)
    return math.lcm(unit, config.data.num_streams or 1)


def parse_target(topology: str):
    """A TPU slice (`v5e-256`) or a GPU target (`h100-16`) by its name (else ValueError)."""
    if gpu_target.is_gpu_target(topology):
        return gpu_target.parse_target(topology)
    try:
        return tpu_topology.parse_slice(topology)
    except ValueError as error:
        generation = topology.strip().lower().partition("-")[0]
        if generation in tpu_topology.GENERATIONS or generation in tpu_topology.NAME_ALIASES:
            raise
        raise ValueError(
            f"{error}; or GPU-COUNT for NVIDIA GPUs, GPU one of {', '.join(gpu_target.GPUS)} "
            "(h100-8: one host of 8, h100-16: two hosts of 8)"
        ) from None


def is_gpu(target) -> bool:
    return isinstance(target, gpu_target.GpuTarget)


def target_devices(target, num_slices: int = 1) -> list:
    """The compile-only devices of a parsed target."""
    if is_gpu(target):
        return gpu_target.topology_devices(target, num_slices)
    return tpu_topology.topology_devices(target, num_slices)


def prepare(config, topology: str, num_slices: int = 1):
    """Validates the config against the target; returns (target, devices, mesh, setup)."""
    target = parse_target(topology)
    devices = target_devices(target, num_slices)
    config_check.check_config(config)
    mesh = sharding.make_mesh(config.mesh, devices)
    config_check.check_config_against_mesh(config, mesh, process_count(devices))
    setup = train_step.build_train_setup(model_from_config(config.model), config, mesh)
    return target, devices, mesh, setup


def compile_report(config, topology: str, num_slices: int = 1) -> dict:
    """Compiles the step for `num_slices` x `topology`; the report (see the module docstring)."""
    target, devices, mesh, setup = prepare(config, topology, num_slices)
    chip = target.chip
    state = setup.abstract_state
    batch = abstract_batch(setup.model, config.global_batch_size, setup.batch_sharding)
    params = jax.tree.leaves(state["params"])
    report = dict(
        platform="gpu" if is_gpu(target) else "tpu",
        topology=target.name,
        topology_name=target.topology_name,
        num_slices=num_slices,
        chips=len(devices),
        hosts=process_count(devices),
        chip=chip.name,
        mesh=dict(mesh.shape),
        global_batch_size=config.global_batch_size,
        parameters=sum(leaf.size for leaf in params),
        memory=dict(
            params_bytes=shard_bytes(state["params"]),
            opt_state_bytes=shard_bytes(state["opt_state"]),
            batch_bytes=shard_bytes(batch),
            hbm_bytes=chip.hbm_bytes,
        ),
    )
    start = time.monotonic()
    try:
        compiled = _compile(setup, config, target)
    except jax.errors.JaxRuntimeError as error:
        if "RESOURCE_EXHAUSTED" not in str(error):
            raise
        report.update(
            fits=False,
            compile_s=round(time.monotonic() - start, 1),
            xla_error=str(error).strip().splitlines()[0][:500],
        )
        report["memory"].update(parse_out_of_memory(str(error)))
        return report
    report["compile_s"] = round(time.monotonic() - start, 1)
    report["memory"].update(_memory(compiled.memory_analysis()))
    total = report["memory"]["total_bytes"]
    report["fits"] = total <= chip.hbm_bytes
    report["memory"]["shortfall_bytes"] = max(0, total - chip.hbm_bytes)
    if is_gpu(target):
        # What JAX's GPU client takes for XLA by default (it preallocates this fraction of
        # the GPU's memory; XLA_CLIENT_MEM_FRACTION changes it): more needs that set.
        report["memory"]["default_pool_bytes"] = int(
            chip.hbm_bytes * JAX_GPU_DEFAULT_MEMORY_FRACTION
        )
    model_flops = profiling.flops_per_example(config.model) * config.global_batch_size
    report["cost"] = roofline(
        _cost(compiled), chip, len(devices), config.global_batch_size, model_flops
    )
    report["collectives"] = hlo_collectives.count_collectives(compiled.as_text())
    report["param_shardings"] = {
        jax.tree_util.keystr(path, simple=True, separator="."): str(leaf.sharding.spec)
        for path, leaf in jax.tree_util.tree_flatten_with_path(state["params"])[0]
    }
    return report


def _compile(setup, config, target):
    """train_step.compile_train_step, with a GPU target's XLA options (gpu_target.py)."""
    options = dict(gpu_target.COMPILER_OPTIONS) if is_gpu(target) else None
    return train_step.compile_train_step(setup, config, options)


def _memory(memory) -> dict:
    sizes = {
        name: int(getattr(memory, f"{name}_size_in_bytes", 0))
        for name in ("argument", "output", "alias", "temp", "generated_code")
    }
    total = (
        sizes["argument"]
        + sizes["output"]
        - sizes["alias"]
        + sizes["temp"]
        + sizes["generated_code"]
    )
    return dict(
        argument_bytes=sizes["argument"],
        output_bytes=sizes["output"],
        donated_bytes=sizes["alias"],
        temp_bytes=sizes["temp"],
        code_bytes=sizes["generated_code"],
        total_bytes=total,
    )


def _cost(compiled) -> dict:
    try:
        analysis = compiled.cost_analysis()
    except NotImplementedError:
        analysis = None
    if isinstance(analysis, (list, tuple)):  # Older JAX: one dict per program.
        analysis = analysis[0]
    if analysis:
        return dict(
            flops_per_chip=float(analysis.get("flops", 0.0)),
            bytes_accessed_per_chip=float(analysis.get("bytes accessed", 0.0)),
            source="XLA's cost analysis of the compiled program",
        )
    # The CUDA plugin's compile-only executable has none: XLA's HLO cost analysis of its
    # optimized module instead. That counts a library call (cuBLAS, cuDNN) as nothing, so
    # those are counted from the HLO and added.
    analysis = hlo_cost_analysis(compiled)
    library = gpu_target.library_call_cost(compiled.as_text())
    return dict(
        flops_per_chip=max(0.0, float(analysis.get("flops", 0.0))) + library["flops"],
        bytes_accessed_per_chip=max(0.0, float(analysis.get("bytes accessed", 0.0)))
        + library["bytes"],
        library_call_flops_per_chip=library["flops"],
        source="XLA's HLO cost analysis of the optimized program, its cuBLAS and cuDNN "
        "calls counted from their shapes",
    )


def hlo_cost_analysis(compiled) -> dict:
    """XLA's HLO cost analysis of a compiled program's optimized module, run by the CPU client.

    jaxlib's `hlo_module_cost_analysis` is not public API (JAX's own
    `Lowered.cost_analysis` calls it); an executable without a cost analysis of its own
    (a compile-only GPU one) is counted with it.
    """
    from jax._src.lib import _jax  # pylint: disable=g-import-not-at-top

    module = compiled.runtime_executable().hlo_modules()[0]
    return _jax.hlo_module_cost_analysis(jax.devices("cpu")[0].client, module)


def roofline(
    cost: dict, chip, chips: int, global_batch_size: int, model_flops_per_step: float
) -> dict:
    """A lower bound on the step time from XLA's per-chip FLOPs and bytes, and what it allows.

    `max_mfu` is the MFU the trainer would log at that bound (its counted model FLOPs,
    `profiling.flops_per_example`, against the peak); `max_hardware_utilisation` is XLA's
    FLOPs against the peak, 1.0 whenever the step is compute-bound.
    """
    compute_s = cost["flops_per_chip"] / (chip.bf16_tflops * 1e12)
    memory_s = cost["bytes_accessed_per_chip"] / (chip.hbm_gbytes_per_s * 1e9)
    bound_s = max(compute_s, memory_s)
    return dict(
        cost,
        flops_per_step=cost["flops_per_chip"] * chips,
        compute_bound_s=compute_s,
        memory_bound_s=memory_s,
        step_lower_bound_s=bound_s,
        bound_by="compute" if compute_s >= memory_s else "memory",
        max_examples_per_s=global_batch_size / bound_s if bound_s else None,
        model_flops_per_step=model_flops_per_step,
        max_mfu=(
            model_flops_per_step / (chips * chip.bf16_tflops * 1e12 * bound_s) if bound_s else None
        ),
        max_hardware_utilisation=compute_s / bound_s if bound_s else None,
    )


def max_global_batch(config, topology: str, num_slices: int = 1, log=print):
    """The largest global batch that fits, by doubling then bisection over allowed batches.

    The bisection stops when the batch found is within `MAX_BATCH_TOLERANCE` of the
    largest that fits (exact for small batches: never coarser than the mesh's unit).
    Returns (batch, its report) or (0, the smallest batch's report) when none fits.
    """
    _, devices, mesh, _ = prepare(config, topology, num_slices)
    unit = batch_unit(config, mesh, process_count(devices))
    reports = {}

    def fits(multiple: int) -> bool:
        config.global_batch_size = multiple * unit
        reports[multiple] = compile_report(config, topology, num_slices)
        log(
            f"global batch {multiple * unit}: "
            f"{'fits' if reports[multiple]['fits'] else 'does not fit'}"
        )
        return reports[multiple]["fits"]

    low, high = 0, max(1, config.global_batch_size // unit)
    while high <= MAX_BATCH_MULTIPLE and fits(high):
        low, high = high, high * 2
    while high - low > max(1, int(low * MAX_BATCH_TOLERANCE)):
        middle = (low + high) // 2
        if fits(middle):
            low = middle
        else:
            high = middle
    config.global_batch_size = max(low, 1) * unit
    return low * unit, reports[max(low, 1)]
