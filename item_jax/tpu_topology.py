"""Cloud TPU slice names (`v5e-256`, `v4-32`) -> compile-only TPU devices, without a TPU.

libtpu describes a TPU topology to the compiler with placeholder devices
(`jax.experimental.topologies.get_topology_desc`), so the train step can be compiled for a
pod on any machine. libtpu is a test extra, not a dependency of the package: it is imported
only here, when a topology is asked for (`pip install -r requirements-dev.txt`, or
`launch/setup_env.sh --accelerator tpu`).

Slice names follow Cloud TPU: the number is TensorCores for v4 and v5p (two per chip,
one JAX device per chip), chips for v5e (`v5e-16`, also `v5litepod-16`) and v6e.
"""

import dataclasses
import importlib.util
import os

from item_jax import accelerators

INSTALL_HINT = (
    "compiling for a TPU topology needs libtpu: pip install -r requirements-dev.txt "
    "(or bash launch/setup_env.sh --dev)"
)

# Chips -> the slice's physical shape (Cloud TPU's topology tables per generation).
SHAPES_2D = {
    1: (1, 1),
    4: (2, 2),
    8: (2, 4),
    16: (4, 4),
    32: (4, 8),
    64: (8, 8),
    128: (8, 16),
    256: (16, 16),
}
SHAPES_3D = {
    4: (2, 2, 1),
    8: (2, 2, 2),
    16: (2, 2, 4),
    32: (2, 4, 4),
    64: (4, 4, 4),
    128: (4, 4, 8),
    256: (4, 8, 8),
    512: (8, 8, 8),
    1024: (8, 8, 16),
    2048: (8, 16, 16),
    4096: (16, 16, 16),
}
# generation -> (Cloud TPU's count is TensorCores per chip, shapes, chip config).
GENERATIONS = {
    "v4": (2, SHAPES_3D, "megacore"),
    "v5p": (2, SHAPES_3D, "megacore"),
    "v5e": (1, SHAPES_2D, "default"),
    "v6e": (1, SHAPES_2D, "default"),
}
NAME_ALIASES = {"v5litepod": "v5e"}


@dataclasses.dataclass(frozen=True)
class TpuSlice:
    name: str  # As given, e.g. "v5e-256".
    generation: str  # "v4", "v5e", "v5p", "v6e".
    shape: tuple[int, ...]  # Chips along each physical axis.
    chip_config: str  # libtpu's chip config ("megacore": one device per chip).

    @property
    def num_chips(self) -> int:
        count = 1
        for size in self.shape:
            count *= size
        return count

    @property
    def topology_name(self) -> str:
        return f"{self.generation}:{'x'.join(str(size) for size in self.shape)}"

    @property
    def chip(self) -> accelerators.Chip:
        return accelerators.chip_by_name(self.generation)

    @property
    def chips_per_host_bounds(self) -> tuple[int, int, int]:
        # Single-host slices hold every chip; pods have 4 chips per host (a 2x2 tray).
        padded = tuple(self.shape) + (1,) * (3 - len(self.shape))
        return padded if self.num_chips <= 8 and len(self.shape) == 2 else (2, 2, 1)

    @property
    def wrap(self) -> tuple[bool, bool, bool]:
        # Wraparound (torus) links: v4/v5p slices of full 4x4x4 cubes and up; the full
        # 16x16 v5e/v6e pod.
        if len(self.shape) == 3:
            return (self.num_chips >= 64,) * 3
        return (self.shape == (16, 16),) * 2 + (False,)


def parse_slice(name: str) -> TpuSlice:
    """`v5e-256`, `v5litepod-16`, `v4-32`, `v5p-128`, `v6e-64` -> a TpuSlice (else ValueError)."""
    generation, dash, count = name.strip().lower().partition("-")
    generation = NAME_ALIASES.get(generation, generation)
    if not dash or generation not in GENERATIONS or not count.isdigit():
        raise ValueError(
            f"--topology {name!r}: expected GENERATION-COUNT as Cloud TPU names a "
            f"slice, with GENERATION one of {', '.join(GENERATIONS)} (e.g. v5e-256, "
            "v4-32, v5p-128, v6e-64)"
        )
    cores_per_chip, shapes, chip_config = GENERATIONS[generation]
    count_value = int(count)
    chips = count_value // cores_per_chip
    if count_value % cores_per_chip or chips not in shapes:
        known = ", ".join(f"{generation}-{c * cores_per_chip}" for c in shapes)
        raise ValueError(f"--topology {name!r}: no such {generation} slice; known: {known}")
    return TpuSlice(name=name, generation=generation, shape=shapes[chips], chip_config=chip_config)


def cloud_accelerator_type(tpu_slice: TpuSlice) -> str:
    """The slice as Cloud TPU's accelerator type names it: `v5litepod-16`, `v4-32`, `v6e-64`."""
    cores_per_chip = GENERATIONS[tpu_slice.generation][0]
    prefix = {"v5e": "v5litepod"}.get(tpu_slice.generation, tpu_slice.generation)
    return f"{prefix}-{tpu_slice.num_chips * cores_per_chip}"


def require_libtpu() -> None:
    """Raises a RuntimeError naming the install command when libtpu is missing."""
    if importlib.util.find_spec("libtpu") is None:
        raise RuntimeError(INSTALL_HINT)


def topology_devices(tpu_slice: TpuSlice, num_slices: int = 1) -> list:
    """Compile-only devices of `num_slices` copies of the slice (no TPU needed)."""
    if num_slices < 1:
        raise ValueError(f"--num_slices must be at least 1, got {num_slices}")
    require_libtpu()
    # Nothing here opens a chip; without this, a second process that has loaded libtpu (a
    # CPU run on a machine with libtpu installed) holds its lock file and the load fails.
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    # Off a TPU VM, libtpu asks the cloud's metadata server what this host is and prints
    # warnings and an INVALID_ARGUMENT trace when nothing answers. Saying it here (only where
    # the variables are unset; a TPU VM sets its own) keeps the report readable; the
    # topology description does not depend on them.
    for variable, value in (
        ("TPU_SKIP_MDS_QUERY", "1"),
        ("TPU_ACCELERATOR_TYPE", cloud_accelerator_type(tpu_slice)),
        ("TPU_WORKER_HOSTNAMES", "localhost"),
        ("TPU_WORKER_ID", "0"),
    ):
        os.environ.setdefault(variable, value)
    from jax.experimental import topologies  # pylint: disable=g-import-not-at-top

    description = topologies.get_topology_desc(
        topology_name=tpu_slice.topology_name,
        platform="tpu",
        chip_config_name=tpu_slice.chip_config,
        chips_per_host_bounds=tpu_slice.chips_per_host_bounds,
        num_slices=num_slices,
        wrap=tpu_slice.wrap,
    )
    return list(description.devices)
