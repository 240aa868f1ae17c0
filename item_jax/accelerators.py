"""The one table of accelerator chips: memory, bf16 peak and memory bandwidth per chip.

Used for MFU (`profiling.peak_bf16_tflops`, by a substring of `jax.Device.device_kind`)
and by the ahead-of-time compile report (`item_jax/aot_report.py`, by TPU generation or GPU
model, `item_jax/gpu_target.py`: fits in memory, roofline step time).

Sources (vendors' published per-chip figures, dense bf16 without sparsity):
  * TPU v4, v5e, v5p, v6e: the Cloud TPU documentation's system-architecture page of each
    generation ("TPU v4", "TPU v5e", "TPU v5p", "TPU v6e": HBM capacity, HBM bandwidth,
    peak bf16 compute per chip).
  * NVIDIA H100 / H200 (SXM), A100 (80 GB SXM), L4: NVIDIA's data sheets of each.
HBM is given in GiB as the TPU documentation states it (v5e "16 GiB"); GPU memory in the
data sheets' GB is converted as 10^9 bytes (80 GB: 74.51 GiB; CUDA offers an H100 80GB
about 79 GiB, so a compile report's "fits" errs on the safe side).
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Chip:
    name: str  # Short name (the Cloud TPU generation, or the GPU model).
    device_kind: str  # A substring of jax.Device.device_kind that identifies it.
    hbm_gib: float  # Memory per chip.
    bf16_tflops: float  # Dense bf16 peak per chip.
    hbm_gbytes_per_s: float  # Memory bandwidth per chip (10^9 bytes/s).

    @property
    def hbm_bytes(self) -> int:
        return int(self.hbm_gib * 2**30)


CHIPS = (
    Chip("v4", "TPU v4", hbm_gib=32.0, bf16_tflops=275.0, hbm_gbytes_per_s=1200.0),
    Chip("v5e", "TPU v5 lite", hbm_gib=16.0, bf16_tflops=197.0, hbm_gbytes_per_s=819.0),
    Chip("v5p", "TPU v5p", hbm_gib=95.0, bf16_tflops=459.0, hbm_gbytes_per_s=2765.0),
    Chip("v6e", "TPU v6 lite", hbm_gib=32.0, bf16_tflops=918.0, hbm_gbytes_per_s=1640.0),
    Chip("H200", "H200", hbm_gib=141e9 / 2**30, bf16_tflops=989.0, hbm_gbytes_per_s=4800.0),
    Chip("H100", "H100", hbm_gib=80e9 / 2**30, bf16_tflops=989.0, hbm_gbytes_per_s=3350.0),
    Chip("A100", "A100", hbm_gib=80e9 / 2**30, bf16_tflops=312.0, hbm_gbytes_per_s=2039.0),
    Chip("L4", "L4", hbm_gib=24e9 / 2**30, bf16_tflops=121.0, hbm_gbytes_per_s=300.0),
)

# Other spellings of device_kind seen for the same chips (v5e is also "TPU v5e"; v5p
# devices may report "TPU v5"; v6e "TPU v6e").
DEVICE_KIND_ALIASES = (("TPU v5e", "v5e"), ("TPU v6e", "v6e"), ("TPU v6", "v6e"), ("TPU v5", "v5p"))


def chip_by_name(name: str) -> Chip:
    for chip in CHIPS:
        if chip.name == name:
            return chip
    raise KeyError(f"no chip named {name!r}; known: {', '.join(chip.name for chip in CHIPS)}")


def chip_for_device_kind(device_kind: str) -> Chip | None:
    """The chip whose device_kind substring occurs in `device_kind` (None if unknown)."""
    kind = device_kind.lower()
    for chip in CHIPS:
        if chip.device_kind.lower() in kind:
            return chip
    for alias, name in DEVICE_KIND_ALIASES:  # The most specific aliases come first.
        if alias.lower() in kind:
            return chip_by_name(name)
    return None
