"""Multi-process start-up: one JAX process per host (TPU pod) or per GPU (SLURM).

`initialize_distributed` is called once, first thing in `python -m item_jax.cli.train`, before
anything touches a device. It connects the processes of a multi-host run:
  * explicit `--coordinator_address/--num_processes/--process_id` flags win; a flag left out
    is filled in by JAX from the cluster environment (this is how `launch/gpu_slurm.sbatch`
    passes the coordinator while each task's id comes from `SLURM_PROCID`);
  * otherwise a cluster environment that JAX detects by itself (a Cloud TPU pod, SLURM or
    Open MPI with more than one task, a GKE TPU job) is initialised with no arguments;
  * otherwise the run is a single process and nothing happens.
"""

import os
from collections.abc import Sequence

import jax
from absl import logging
from jax.experimental import multihost_utils


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_count: int | None = None,
) -> None:
    """Connects this process to the others of its run; a no-op for a single process.

    Args:
      coordinator_address: `host:port` of process 0's coordinator service.
      num_processes: processes in the run.
      process_id: this process's index in `[0, num_processes)`.
      local_device_count: devices this process drives. On the CPU platform it sets the number
        of host devices; in a multi-process GPU run it makes the process drive local GPUs
        `0..n-1` (one process per node) instead of the single GPU JAX gives each SLURM /
        Open MPI task.
    """
    if jax.distributed.is_initialized():
        logging.info("JAX distributed system already initialised; nothing to do.")
        return
    local_device_ids = _apply_local_device_count(local_device_count)
    explicit = {
        "coordinator_address": coordinator_address,
        "num_processes": num_processes,
        "process_id": process_id,
    }
    if any(value is not None for value in explicit.values()):
        _initialize_from_flags(explicit, local_device_ids)
    elif (cluster := detect_cluster()) is not None:
        logging.info("Detected a %s cluster; initialising JAX distributed from it.", cluster)
        _use_gloo_on_cpu()
        jax.distributed.initialize(local_device_ids=local_device_ids)
    else:
        logging.info("No multi-process cluster detected; running as a single process.")


def shutdown_distributed() -> None:
    """Ends a multi-process run together (a no-op in a single process).

    Every process enters JAX's shutdown barrier while its backend is still up, so process 0
    stops the coordination service only after every peer has arrived. Left to interpreter
    exit, process 0 can stop it while a peer is still tearing down, or wait on that peer.
    The command lines that join a job call this when they finish.
    """
    if jax.distributed.is_initialized():
        jax.distributed.shutdown()


def detect_cluster() -> str | None:
    """Names the multi-process environment JAX would bootstrap from, or None.

    Uses JAX's own cluster detection (`_jax_cluster_types`), minus the opt-in methods (mpi4py),
    and ignores an environment that reports a single process (e.g. `SLURM_NTASKS=1`).
    """
    cluster_type = _present_cluster_type()
    if cluster_type is None:
        return None
    process_count = cluster_type.get_process_count()
    if process_count < 2:
        logging.info(
            "%s environment found with %d process; not initialising distributed.",
            cluster_type.__name__,
            process_count,
        )
        return None
    return cluster_type.__name__


def _present_cluster_type():
    """The first cluster environment JAX detects without opting in, whatever its size."""
    for cluster_type in _jax_cluster_types():
        if not getattr(cluster_type, "opt_in_only_method", False) and cluster_type.is_env_present():
            return cluster_type
    return None


def preemption_sync_enabled() -> bool:
    """Whether JAX's preemption sync service runs in this process (`jax.distributed` started it).

    `multihost_utils.reached_preemption_sync_point` works only when it does.
    """
    return bool(_jax_distributed_state().preemption_sync_manager)


# --- The only reads of JAX's private modules --------------------------------------------
# JAX has no public API for either: which cluster environments `jax.distributed.initialize()`
# would detect (it only acts on them), and whether it started the preemption sync service.
# Both are read here and nowhere else, so that a JAX upgrade that moves them breaks one place;
# the imports sit in the helpers so that importing this module never depends on them.


def _jax_cluster_types() -> tuple:
    """The cluster environment classes JAX registered, in its detection order."""
    from jax._src import clusters  # pylint: disable=g-import-not-at-top

    return tuple(getattr(clusters.ClusterEnv, "_cluster_types", ()))


def _jax_distributed_state():
    """JAX's process-wide distributed state (the object `jax.distributed` initialises)."""
    from jax._src import distributed  # pylint: disable=g-import-not-at-top

    return distributed.global_state


def is_main_process() -> bool:
    """True on process 0, the one that writes logs, reports and checkpoints metadata."""
    return jax.process_index() == 0


def sync_global_devices(name: str) -> None:
    """Blocks until every process reaches the barrier called `name`."""
    multihost_utils.sync_global_devices(name)


def _initialize_from_flags(
    explicit: dict[str, object], local_device_ids: Sequence[int] | None
) -> None:
    """Initialises from the flags given; JAX fills a missing one from the cluster environment."""
    given = {name: value for name, value in explicit.items() if value is not None}
    missing = [name for name in explicit if name not in given]
    cluster_type = _present_cluster_type()
    if missing and cluster_type is None:
        raise ValueError(
            f"Multi-process flags {sorted(given)} were given without {missing}, and no cluster "
            "environment (SLURM, Open MPI, Cloud TPU) is present to fill them in: pass all of "
            "--coordinator_address, --num_processes and --process_id."
        )
    logging.info(
        "Initialising JAX distributed from flags %s%s.",
        given,
        f"; {missing} from the {cluster_type.__name__} environment" if missing else "",
    )
    _use_gloo_on_cpu()
    jax.distributed.initialize(local_device_ids=local_device_ids, **explicit)


def _apply_local_device_count(local_device_count: int | None) -> Sequence[int] | None:
    """Applies `local_device_count`; returns the local device ids to hand to JAX, if any."""
    if local_device_count is None:
        return None
    if local_device_count < 1:
        raise ValueError(f"local_device_count must be >= 1, got {local_device_count}")
    if _platform_may_be_cpu():
        jax.config.update("jax_num_cpu_devices", local_device_count)
    if _requested_platforms() == {"cpu"}:
        return None
    return list(range(local_device_count))


def _use_gloo_on_cpu() -> None:
    """Cross-process collectives on CPU need gloo; it must be chosen before initialisation."""
    if _platform_may_be_cpu():
        jax.config.update("jax_cpu_collectives_implementation", "gloo")


def _requested_platforms() -> set[str]:
    platforms = jax.config.jax_platforms or os.environ.get("JAX_PLATFORMS", "")
    return {platform.strip().lower() for platform in platforms.split(",") if platform.strip()}


def _platform_may_be_cpu() -> bool:
    platforms = _requested_platforms()
    return not platforms or "cpu" in platforms
