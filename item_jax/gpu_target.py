"""NVIDIA GPU targets (`h100-8`, `h100-16`) -> compile-only GPU devices, without a GPU.

JAX's CUDA plugin describes GPUs to the compiler from a text `GpuTargetConfigProto` (what
XLA:GPU would otherwise read from the card) and a topology of hosts and GPUs
(`jax.experimental.topologies.get_topology_desc(platform="cuda", ...)`), so the train step
can be compiled for a GPU cluster on a CPU machine. The plugin (`jax-cuda12-plugin` and
`jax-cuda12-pjrt`, test extras in requirements-dev.txt) is used only here, when a GPU target
is asked for; no NVIDIA library is needed to compile.

Target names are GPU-COUNT: COUNT GPUs, 8 per host (HGX/DGX nodes) when COUNT is a
multiple of 8 (`h100-16`: 2 hosts of 8), else one host of 1, 2 or 4 GPUs (`h100-4`). Each
host is its own NVLink domain (what XLA calls a slice of the GPU topology).

The per-GPU facts below are the vendors' published figures (memory size, bandwidth and
bf16 peak are in `item_jax/accelerators.py`, the one chip table):
  * SMs, L2 cache, FP32 cores per SM, NVLink links, PCIe: NVIDIA's data sheets ("NVIDIA
    H100 Tensor Core GPU", "NVIDIA H200 Tensor Core GPU", "NVIDIA A100 Tensor Core GPU")
    and architecture whitepapers ("NVIDIA H100 Tensor Core GPU Architecture", "NVIDIA A100
    Tensor Core GPU Architecture"), SXM form factor.
  * Per-SM and per-block limits (threads, registers, shared memory): the CUDA C++
    Programming Guide's table of compute capabilities (8.0 and 9.0).
  * Clock: the maximum SM clock the CUDA runtime reports for the card
    (`cudaDeviceProp::clockRate`: 1,980 MHz on H100 and H200 SXM, 1,410 MHz on A100 SXM).
The software versions (CUDA runtime, cuDNN) are those the installed plugin was built
against: what a run with it would use.
"""

import dataclasses
import importlib.util
import math
import os
import re

from item_jax import accelerators, hlo_collectives

PLUGIN_PACKAGES = "jax-cuda12-plugin==0.10.2 jax-cuda12-pjrt==0.10.2"
INSTALL_HINT = (
    f"compiling for a GPU target needs JAX's CUDA plugin: pip install {PLUGIN_PACKAGES} "
    "(both in requirements-dev.txt)"
)
GPUS_PER_HOST = 8  # An HGX/DGX node; smaller counts are one host's GPUs.
SINGLE_HOST_COUNTS = (1, 2, 4, 8)
MAX_GPUS = 4096
# XLA options for every compile for a GPU target. Without a GPU, XLA:GPU cannot autotune, and
# its Triton GEMM emitter then fails to tile some of the train step's matrix products
# (`INTERNAL: Couldn't find output tile sizes`, configs/base.py:pod on 8 H100s); cuBLAS takes
# every product instead (on a GPU the autotuner picks between the two, product by product).
COMPILER_OPTIONS = {"xla_gpu_enable_triton_gemm": False}


@dataclasses.dataclass(frozen=True)
class GpuModel:
    """What XLA:GPU reads from a card, as the data sheets and CUDA's tables give it."""

    chip: str  # Its row in accelerators.CHIPS (memory, bandwidth, bf16 peak).
    device_name: str  # As CUDA names the card (jax.Device.device_kind on it).
    compute_capability: tuple[int, int]
    accelerated_features: bool  # The "a" targets (sm_90a): Hopper's wgmma and TMA.
    sm_count: int
    fp32_cores_per_sm: int
    clock_ghz: float
    l2_cache_bytes: int
    shared_memory_per_sm: int
    shared_memory_per_block_optin: int
    nvlink_links: int
    pcie_bytes_per_s: int  # One direction.
    threads_per_sm: int = 2048
    registers_per_sm: int = 65536
    registers_per_block: int = 65536
    shared_memory_per_block: int = 48 * 1024  # Without opting in.

    @property
    def memory_bytes(self) -> int:
        return accelerators.chip_by_name(self.chip).hbm_bytes

    @property
    def memory_bytes_per_s(self) -> int:
        return int(accelerators.chip_by_name(self.chip).hbm_gbytes_per_s * 1e9)


_H100 = GpuModel(
    chip="H100",
    device_name="NVIDIA H100 80GB HBM3",
    compute_capability=(9, 0),
    accelerated_features=True,
    sm_count=132,
    fp32_cores_per_sm=128,
    clock_ghz=1.98,
    l2_cache_bytes=50 * 2**20,
    shared_memory_per_sm=228 * 1024,
    shared_memory_per_block_optin=227 * 1024,
    nvlink_links=18,
    pcie_bytes_per_s=64 * 10**9,
)

GPUS = {
    "h100": _H100,
    # The same Hopper die as H100 with more and faster memory (accelerators.py).
    "h200": dataclasses.replace(_H100, chip="H200", device_name="NVIDIA H200"),
    "a100": GpuModel(
        chip="A100",
        device_name="NVIDIA A100-SXM4-80GB",
        compute_capability=(8, 0),
        accelerated_features=False,
        sm_count=108,
        fp32_cores_per_sm=64,
        clock_ghz=1.41,
        l2_cache_bytes=40 * 2**20,
        shared_memory_per_sm=164 * 1024,
        shared_memory_per_block_optin=163 * 1024,
        nvlink_links=12,
        pcie_bytes_per_s=32 * 10**9,
    ),
}


@dataclasses.dataclass(frozen=True)
class GpuTarget:
    name: str  # As given, e.g. "h100-16".
    model: str  # A key of GPUS.
    hosts: int
    gpus_per_host: int

    @property
    def gpu(self) -> GpuModel:
        return GPUS[self.model]

    @property
    def chip(self) -> accelerators.Chip:
        return accelerators.chip_by_name(self.gpu.chip)

    @property
    def num_chips(self) -> int:
        return self.hosts * self.gpus_per_host

    @property
    def topology(self) -> str:
        # The plugin's "slices x hosts per slice x GPUs per host": one NVLink domain a host.
        return f"{self.hosts}x1x{self.gpus_per_host}"

    @property
    def topology_name(self) -> str:
        hosts = "1 host" if self.hosts == 1 else f"{self.hosts} hosts"
        return f"{hosts} x {self.gpus_per_host} {self.gpu.device_name}"


def is_gpu_target(name: str) -> bool:
    return name.strip().lower().partition("-")[0] in GPUS


def parse_target(name: str) -> GpuTarget:
    """`h100-8`, `h200-16`, `a100-4` -> a GpuTarget (else ValueError)."""
    model, dash, count = name.strip().lower().partition("-")
    if not dash or model not in GPUS or not count.isdigit():
        raise ValueError(
            f"--topology {name!r}: expected GPU-COUNT with GPU one of {', '.join(GPUS)} "
            "(e.g. h100-8: one host of 8 GPUs, h100-16: two hosts of 8)"
        )
    gpus = int(count)
    if gpus in SINGLE_HOST_COUNTS:
        return GpuTarget(name=name, model=model, hosts=1, gpus_per_host=gpus)
    if gpus % GPUS_PER_HOST or not 0 < gpus <= MAX_GPUS:
        raise ValueError(
            f"--topology {name!r}: a GPU count is 1, 2 or 4 (one host) or a multiple of "
            f"{GPUS_PER_HOST} (hosts of {GPUS_PER_HOST}) up to {MAX_GPUS}"
        )
    return GpuTarget(
        name=name, model=model, hosts=gpus // GPUS_PER_HOST, gpus_per_host=GPUS_PER_HOST
    )


def _plugin_versions() -> tuple[str, tuple[int, int, int]]:
    """(CUDA runtime "12.9.0", cuDNN (9, 8, 0)) the installed plugin was built against."""
    from jax_cuda12_plugin import _versions  # pylint: disable=g-import-not-at-top

    cuda, cudnn = _versions.cuda_runtime_build_version(), _versions.cudnn_build_version()
    return f"{cuda // 1000}.{cuda % 1000 // 10}.0", (
        cudnn // 10000,
        cudnn % 10000 // 100,
        cudnn % 100,
    )


def target_config_text(gpu: GpuModel) -> str:
    """The text-format `GpuTargetConfigProto` of one GPU (what the plugin compiles for)."""
    cuda, cudnn = _plugin_versions()
    major, minor = gpu.compute_capability
    suffix = "a" if gpu.accelerated_features else ""
    extension = "    feature_extension: ACCELERATED_FEATURES\n" if suffix else ""
    memory = gpu.memory_bytes
    clock_khz = round(gpu.clock_ghz * 1e6)
    return (
        "gpu_device_info {\n"
        "  threads_per_block_limit: 1024\n"
        "  threads_per_warp: 32\n"
        f"  shared_memory_per_block: {gpu.shared_memory_per_block}\n"
        f"  shared_memory_per_core: {gpu.shared_memory_per_sm}\n"
        f"  threads_per_core_limit: {gpu.threads_per_sm}\n"
        f"  core_count: {gpu.sm_count}\n"
        f"  fpus_per_core: {gpu.fp32_cores_per_sm}\n"
        "  block_dim_limit_x: 2147483647\n"
        "  block_dim_limit_y: 65535\n"
        "  block_dim_limit_z: 65535\n"
        f"  memory_bandwidth: {gpu.memory_bytes_per_s}\n"
        f"  l2_cache_size: {gpu.l2_cache_bytes}\n"
        f"  clock_rate_ghz: {gpu.clock_ghz}\n"
        f"  device_memory_size: {memory}\n"
        f"  shared_memory_per_block_optin: {gpu.shared_memory_per_block_optin}\n"
        "  cuda_compute_capability {\n"
        f"    major: {major}\n"
        f"    minor: {minor}\n"
        f"{extension}"
        "  }\n"
        f"  registers_per_core_limit: {gpu.registers_per_sm}\n"
        f"  registers_per_block_limit: {gpu.registers_per_block}\n"
        "  thread_dim_limit_x: 1024\n"
        "  thread_dim_limit_y: 1024\n"
        "  thread_dim_limit_z: 64\n"
        '  device_vendor: "NVIDIA Corporation"\n'
        f'  platform_version: "Compute Capability {major}.{minor}{suffix}"\n'
        f'  model_str: "sm_{major}.{minor}{suffix} with {memory}B RAM, {gpu.sm_count} cores, '
        f'{clock_khz}KHz clock, {gpu.l2_cache_bytes}B L2$"\n'
        "  device_address_bits: 64\n"
        f"  pcie_bandwidth: {gpu.pcie_bytes_per_s}\n"
        "  ecc_enabled: true\n"
        f'  name: "{gpu.device_name}"\n'
        f'  runtime_version: "{cuda}"\n'
        f'  compile_time_toolkit_version: "{cuda}"\n'
        f'  dnn_version: "{".".join(map(str, cudnn))}"\n'
        "  device_interconnect_info {\n"
        f"    active_links: {gpu.nvlink_links}\n"
        "  }\n"
        "}\n"
        'platform_name: "CUDA"\n'
        f"dnn_version_info {{\n  major: {cudnn[0]}\n  minor: {cudnn[1]}\n  patch: {cudnn[2]}\n}}\n"
        f'device_description_str: "{gpu.device_name}"\n'
    )


def require_cuda_plugin() -> None:
    """Raises a RuntimeError naming the packages to install when the plugin is missing."""
    try:
        found = all(
            importlib.util.find_spec(name) is not None
            for name in ("jax_cuda12_plugin", "jax_plugins.xla_cuda12")
        )
    except ModuleNotFoundError:  # No jax_plugins namespace at all.
        found = False
    if not found:
        raise RuntimeError(INSTALL_HINT)


def prepare_environment() -> None:
    """Lets the plugin register without a GPU; call before JAX starts its backends.

    The plugin's start-up checks the CUDA libraries unless JAX is asked for other platforms
    only; on a machine without a GPU that check fails and the plugin never registers. The
    compile needs no accelerator backend: JAX runs on the CPU and compiles for the
    description. A JAX_PLATFORMS that is set (a GPU machine's `cuda`) is left as it is.
    """
    if not os.environ.get("JAX_PLATFORMS"):
        import jax  # pylint: disable=g-import-not-at-top

        jax.config.update("jax_platforms", "cpu")
    os.environ.setdefault("JAX_SKIP_CUDA_CONSTRAINTS_CHECK", "1")


def topology_devices(target: GpuTarget, num_slices: int = 1) -> list:
    """The target's compile-only GPU devices (no GPU needed)."""
    if num_slices != 1:
        raise ValueError(
            "--num_slices is for TPU slices; a GPU target counts its GPUs "
            f"({target.model}-{2 * GPUS_PER_HOST} is 2 hosts of {GPUS_PER_HOST})"
        )
    require_cuda_plugin()
    os.environ.setdefault("JAX_SKIP_CUDA_CONSTRAINTS_CHECK", "1")
    from jax.experimental import topologies  # pylint: disable=g-import-not-at-top

    try:
        description = topologies.get_topology_desc(
            topology_name="",
            platform="cuda",
            target_config=target_config_text(target.gpu),
            topology=target.topology,
        )
    except NotImplementedError as error:
        # The plugin is installed but did not register: JAX started its backends (and the
        # plugin's CUDA check failed) before prepare_environment could say cpu.
        raise RuntimeError(
            "JAX's CUDA plugin did not register on this machine; run with JAX_PLATFORMS=cpu "
            f"({error})"
        ) from None
    return list(description.devices)


_DEFINITION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*?)\s+[a-z][a-z\-]*\(")
_LIBRARY_CALL = re.compile(
    r'custom-call\(([^)]*)\).*custom_call_target="__(cublas|cudnn)\$([^"]+)"'
)
_CONTRACTING = re.compile(r'"lhs_contracting_dimensions":\[([^\]]*)\]')
_DIM_LABELS = re.compile(r"dim_labels=[^_]+_([^-]+)->")


def _dims(shape_text: str) -> list[int] | None:
    """The dimensions of the first array of an HLO shape (None if it has none)."""
    match = re.search(r"\b[a-z][a-z0-9]*\[([0-9,]*)\]", shape_text)
    return None if match is None else [int(d) for d in match.group(1).split(",") if d]


def library_call_cost(hlo_text: str) -> dict:
    """{"flops", "bytes"} of the cuBLAS matrix products and cuDNN convolutions of a program.

    XLA's HLO cost analysis counts such a custom call as nothing. A product does 2 x (its
    output's elements) x (the contracted size) FLOPs; a convolution 2 x (its forward
    output's elements) x (the filter's elements per output feature), and each of its
    backward calls as much (the input gradient's call takes (output gradient, filter), the
    filter gradient's (input, output gradient)). Bytes are the operands' and the output's.
    """
    shapes = {}
    for line in hlo_text.splitlines():
        match = _DEFINITION.match(line)
        if match:
            shapes[match.group(1)] = match.group(2)
    flops = num_bytes = 0.0
    for line in hlo_text.splitlines():
        call = _LIBRARY_CALL.search(line)
        if call is None:
            continue
        result = _DEFINITION.match(line).group(2)
        operands = [shapes.get(name.strip().lstrip("%"), "") for name in call.group(1).split(",")]
        # The result is (output, workspace): the scratch workspace is not data moved.
        output_array = re.search(r"\b[a-z][a-z0-9]*\[[0-9,]*\]", result)
        num_bytes += sum(
            hlo_collectives.shape_bytes(shape)
            for shape in [output_array.group(0) if output_array else ""] + operands
        )
        library, target = call.group(2), call.group(3)
        if library == "cublas" and len(operands) >= 2:
            contracting = _CONTRACTING.search(line)
            lhs, out = _dims(operands[0]), _dims(result)
            if contracting and lhs and out is not None:
                indices = [int(i.strip('" ')) for i in contracting.group(1).split(",") if i]
                flops += 2.0 * math.prod(out) * math.prod(lhs[i] for i in indices)
        elif library == "cudnn" and target.startswith("conv") and len(operands) >= 2:
            labels = _DIM_LABELS.search(line)
            if target == "convBackwardFilter":
                output, kernel = _dims(operands[1]), _dims(result)
            elif target == "convBackwardInput":
                output, kernel = _dims(operands[0]), _dims(operands[1])
            else:
                output, kernel = _dims(result), _dims(operands[1])
            if labels and output and kernel and len(kernel) == len(labels.group(1)):
                per_feature = math.prod(kernel) / kernel[labels.group(1).index("o")]
                flops += 2.0 * math.prod(output) * per_feature
    return dict(flops=flops, bytes=num_bytes)
