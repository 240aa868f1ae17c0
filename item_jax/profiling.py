"""What a step costs: counted FLOPs, a chip's peak, XLA's memory analysis, and the host CPU.

The trainer logs the costs at start-up; the train-step benchmark reports them as JSON (with
MFU: counted FLOPs per second against the chip's bf16 peak). CPU figures depend on the
CPU's model and matrix features, so the benchmarks also name the host CPU (`host_cpu`).
"""

import math

import jax

from item_jax import accelerators


def peak_bf16_tflops(device_kind: str) -> float | None:
    """Dense bf16 peak TFLOP/s of the chip (`item_jax/accelerators.py`); None if unlisted."""
    chip = accelerators.chip_for_device_kind(device_kind)
    return None if chip is None else chip.bf16_tflops


# The CPU features that decide how fast the step's products run: AVX-512, its bf16 dot
# product, and the AMX matrix units (bf16 products through XLA CPU and oneDNN).
MATRIX_FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def host_cpu(cpuinfo_path: str = "/proc/cpuinfo") -> dict:
    """The host CPU: its model name and matrix features (Linux; else unknown)."""
    model, flags = "unknown", set()
    try:
        with open(cpuinfo_path, encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model == "unknown":
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return dict(model=model, matrix_features=[name for name in MATRIX_FEATURES if name in flags])


def flops_per_example(model_config) -> float:
    """Matmul FLOPs of one training example (forward + backward = 3x forward)."""
    width, mlp, layers = model_config.hidden_dim, model_config.mlp_dim, model_config.num_layers
    patches = (model_config.image_size // model_config.patch_size) ** 2
    tokens = model_config.max_text_len + patches
    per_layer = 2 * tokens * (4 * width * width + 2 * width * mlp) + 4 * tokens * tokens * width
    patch_embed = 2 * patches * (model_config.patch_size**2 * 3) * width
    return 3.0 * (layers * per_layer + patch_embed)


def memory_summary(memory) -> str:
    """The compiled step's memory per device, from XLA's memory analysis."""
    if memory is None:
        return "unavailable"
    sizes = {
        name: getattr(memory, f"{name}_size_in_bytes", 0)
        for name in ("argument", "output", "alias", "temp", "generated_code")
    }
    peak = getattr(memory, "peak_memory_in_bytes", 0)
    parts = [f"peak {_mib(peak)}"] if peak else []
    parts += [
        f"arguments {_mib(sizes['argument'])}",
        f"outputs {_mib(sizes['output'])} ({_mib(sizes['alias'])} in donated buffers)",
        f"temporaries {_mib(sizes['temp'])}",
        f"code {_mib(sizes['generated_code'])}",
    ]
    return ", ".join(parts)


def state_memory_summary(abstract_state) -> str:
    """Bytes of params and optimizer state on the fullest device, against their total."""
    parts = []
    for name in ("params", "opt_state"):
        leaves = jax.tree.leaves(abstract_state[name])
        total = sum(leaf.size * leaf.dtype.itemsize for leaf in leaves)
        per_device = sum(
            math.prod(leaf.sharding.shard_shape(leaf.shape)) * leaf.dtype.itemsize
            for leaf in leaves
        )
        parts.append(f"{name} {_mib(per_device)} of {_mib(total)}")
    return ", ".join(parts)


def _mib(num_bytes: float) -> str:
    return f"{num_bytes / 2**20:.1f}MiB"
