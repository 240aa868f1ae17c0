"""The train step compiled for NVIDIA GPUs on CPU (JAX's CUDA plugin's compile-only devices).

One small compile for the module (a shrunk tiny config on 8 H100s, data parallel, so that the
gradients' all-reduce is in it and the parameters' bytes can be counted independently); the
rest reads it, or needs no compile.
"""

import math

import jax
import pytest
from conftest import small_config
from subprocess_utils import compile_tiny_beyond_memory

from item_jax import accelerators, aot_report, gpu_target, hlo_collectives, profiling
from item_jax import batch as batch_lib
from item_jax.cli import compile as compile_cli
from item_jax.model import model_from_config

TOPOLOGY = "h100-8"


@pytest.fixture(scope="module")
def report():
    config = small_config(**{"mesh.data": 8})
    return config, aot_report.compile_report(config, TOPOLOGY)


@pytest.mark.slow
def test_tiny_step_compiles_for_8_h100s(report):
    config, result = report
    assert result["platform"] == "gpu" and result["fits"]
    assert (result["chips"], result["hosts"], result["chip"]) == (8, 1, "H100")
    assert result["mesh"] == {"data": 8, "fsdp": 1, "tensor": 1}
    memory = result["memory"]
    assert memory["hbm_bytes"] == accelerators.chip_by_name("H100").hbm_bytes
    held = memory["params_bytes"] + memory["opt_state_bytes"] + memory["batch_bytes"]
    # XLA's arguments hold the state and the batch (less a scalar the step never reads).
    assert held - 64 <= memory["argument_bytes"] <= held + 64
    assert (
        memory["total_bytes"]
        >= memory["argument_bytes"] + memory["temp_bytes"] - (memory["donated_bytes"])
    )
    assert memory["default_pool_bytes"] == int(0.75 * memory["hbm_bytes"])
    cost = result["cost"]
    assert cost["flops_per_chip"] > 0 and cost["flops_per_step"] == 8 * cost["flops_per_chip"]
    # Every matrix product is a cuBLAS call (gpu_target.COMPILER_OPTIONS), which XLA's cost
    # model counts as nothing: most FLOPs are those counted from the calls' shapes.
    assert 0.5 * cost["flops_per_chip"] < cost["library_call_flops_per_chip"]
    assert cost["library_call_flops_per_chip"] <= cost["flops_per_chip"]
    # XLA's count covers the trainer's counted model FLOPs (and masks, losses, the
    # optimizer), without counting anything twice.
    model_flops = profiling.flops_per_example(config.model) * config.global_batch_size
    assert model_flops <= cost["flops_per_step"] <= 3 * model_flops
    assert cost["step_lower_bound_s"] == max(cost["compute_bound_s"], cost["memory_bound_s"])
    # Data parallel: the gradients are summed over the 8 GPUs, an asynchronous all-reduce on
    # XLA:GPU (start/done pairs, each counted once).
    all_reduce = result["collectives"]["all-reduce"]
    assert all_reduce["count"] >= 1 and all_reduce["bytes"] >= memory["params_bytes"]
    assert all_reduce["by_group_size"]["8"]["bytes"] >= memory["params_bytes"]


def test_parameter_and_optimizer_bytes_equal_a_count_of_the_state(report):
    config, result = report
    model = model_from_config(config.model)
    variables = jax.eval_shape(
        lambda: model.init({"params": jax.random.key(0)}, *batch_lib.dummy_model_inputs(model))
    )
    count = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(variables["params"]))
    assert result["parameters"] == count
    assert result["memory"]["params_bytes"] == 4 * count  # float32, replicated on data=8.
    # AdamW's mu and nu mirror the parameters; the rest are scalar step counters.
    assert 0 <= result["memory"]["opt_state_bytes"] - 2 * 4 * count <= 64


def test_the_table_speaks_of_gpus(report):
    _, result = report
    table = compile_cli.format_report(result)
    assert "1 host x 8 NVIDIA H100 80GB HBM3: 8 GPUs" in table
    assert "memory of one H100 GPU" in table and "JAX default GPU pool (75% of it)" in table
    assert "cuBLAS and cuDNN calls counted" in table and "all-reduce" in table


@pytest.mark.slow
def test_a_gpu_step_that_cannot_fit_exits_1_naming_the_shortfall():
    # XLA:GPU does not refuse a program larger than the GPU (it warns that rematerialization
    # could not bring it down); the report compares XLA's total with the GPU's memory.
    result = compile_tiny_beyond_memory(TOPOLOGY)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "does not fit one H100 GPU's 74.51 GiB memory: over by" in result.stderr
    assert "32768 per GPU" in result.stderr and "--max_batch" in result.stderr
    assert "Traceback" not in result.stderr
    assert '"fits": false' in result.stdout and '"platform": "gpu"' in result.stdout


def test_gpu_target_names():
    target = gpu_target.parse_target("h100-8")
    assert (target.hosts, target.gpus_per_host, target.topology) == (1, 8, "1x1x8")
    assert target.chip.name == "H100" and target.num_chips == 8
    assert gpu_target.parse_target("h200-64").topology == "8x1x8"
    assert gpu_target.parse_target("A100-4").topology == "1x1x4"
    with pytest.raises(ValueError, match="a multiple of 8"):
        gpu_target.parse_target("h100-12")
    with pytest.raises(ValueError, match="GPU-COUNT"):
        gpu_target.parse_target("h100")
    assert isinstance(aot_report.parse_target("v5e-4"), aot_report.tpu_topology.TpuSlice)
    with pytest.raises(ValueError, match="GENERATION-COUNT.*or GPU-COUNT"):
        aot_report.parse_target("b200-8")
    with pytest.raises(ValueError, match="--num_slices is for TPU slices"):
        gpu_target.topology_devices(target, num_slices=2)


def test_compile_only_devices_are_the_described_gpus():
    text = gpu_target.target_config_text(gpu_target.GPUS["h100"])
    assert "core_count: 132" in text and "memory_bandwidth: 3350000000000" in text
    assert "feature_extension: ACCELERATED_FEATURES" in text  # sm_90a.
    assert "feature_extension" not in gpu_target.target_config_text(gpu_target.GPUS["a100"])
    devices = gpu_target.topology_devices(gpu_target.parse_target("h100-16"))
    assert len(devices) == 16 and aot_report.process_count(devices) == 2
    assert {device.device_kind for device in devices} == {"NVIDIA H100 80GB HBM3"}
    assert accelerators.chip_for_device_kind(devices[0].device_kind).name == "H100"


def test_missing_cuda_plugin_names_the_packages(monkeypatch):
    real_find_spec = gpu_target.importlib.util.find_spec
    monkeypatch.setattr(
        gpu_target.importlib.util,
        "find_spec",
        lambda name: None if name == "jax_cuda12_plugin" else real_find_spec(name),
    )
    with pytest.raises(
        RuntimeError, match=r"pip install jax-cuda12-plugin==0\.10\.2 jax-cuda12-pjrt==0\.10\.2"
    ):
        gpu_target.topology_devices(gpu_target.parse_target(TOPOLOGY))


def test_library_calls_are_counted_from_their_shapes():
    # As XLA:GPU writes them (configs/tiny.py on 8 H100s): a cuBLAS product with its
    # workspace, and a convolution with its two backward calls.
    gemm_config = (
        'backend_config={"gemm_backend_config":{"dot_dimension_numbers":'
        '{"lhs_contracting_dimensions":["1"],"rhs_contracting_dimensions":["0"],'
        '"lhs_batch_dimensions":[],"rhs_batch_dimensions":[]}}}'
    )
    conv = 'window={{size=3x3 stride=2x2}}, dim_labels=b01f_o01i->b01f, custom_call_target="{}"'
    hlo = "\n".join(
        [
            "ENTRY %main {",
            "  %a = bf16[64,32]{1,0} parameter(0)",
            "  %b = bf16[32,16]{1,0} parameter(1)",
            "  %x = f32[2,16,16,16]{3,2,1,0} parameter(2)",
            "  %k = f32[32,3,3,16]{3,2,1,0} parameter(3)",
            "  %dy = f32[2,8,8,32]{3,2,1,0} parameter(4)",
            "  %mm = (f32[64,16]{1,0}, s8[4194304]{0}) custom-call(%a, %b), "
            'custom_call_target="__cublas$lt$matmul", ' + gemm_config,
            "  %y = (f32[2,8,8,32]{3,2,1,0}, u8[0]{0}) custom-call(%x, %k), "
            + conv.format("__cudnn$convForward"),
            "  %dx = (f32[2,16,16,16]{3,2,1,0}, u8[0]{0}) custom-call(%dy, %k), "
            + conv.format("__cudnn$convBackwardInput"),
            "  %dk = (f32[32,3,3,16]{3,2,1,0}, u8[0]{0}) custom-call(%x, %dy), "
            + conv.format("__cudnn$convBackwardFilter"),
            "}",
        ]
    )
    cost = gpu_target.library_call_cost(hlo)
    convolution = 2 * (2 * 8 * 8 * 32) * (3 * 3 * 16)
    assert cost["flops"] == 2 * 64 * 16 * 32 + 3 * convolution
    product_bytes = 64 * 32 * 2 + 32 * 16 * 2 + 64 * 16 * 4  # The workspace is not counted.
    x, k, dy = 2 * 16 * 16 * 16 * 4, 32 * 3 * 3 * 16 * 4, 2 * 8 * 8 * 32 * 4
    assert cost["bytes"] == product_bytes + (x + k + dy) * 3


def test_asynchronous_gpu_collectives_count_their_results_once():
    # XLA:GPU's starts hold (operands, results), each a tuple when collectives were combined.
    hlo = "\n".join(
        [
            "ENTRY %main {",
            "  %rs = ((f32[1024]{0}, f32[1024,8]{1,0}), (f32[128]{0}, f32[128,8]{1,0})) "
            "reduce-scatter-start(%a, %b), channel_id=5, "
            "replica_groups=mesh['axis_0'=1,'axis_1'=8] {'axis_1'}, dimensions={0}",
            "  %rs-done = (f32[128]{0}, f32[128,8]{1,0}) reduce-scatter-done(%rs)",
            "  %ar = (f32[6]{0}, f32[4]{0}) all-reduce-start(%c, %d), channel_id=6, "
            "replica_groups=mesh['axis_0'=8,'axis_1'=1] {'axis_0'}",
            "  %ar-done = (f32[6]{0}, f32[4]{0}) all-reduce-done(%ar)",
            "  %ag = ((bf16[96,768]{1,0}), bf16[768,768]{1,0}) all-gather-start(%e), "
            "channel_id=7, replica_groups=[1,8]<=[8], dimensions={0}",
            "  %ag-done = bf16[768,768]{1,0} all-gather-done(%ag)",
            "}",
        ]
    )
    counted = hlo_collectives.count_collectives(hlo)
    assert counted["reduce-scatter"] == {
        "count": 1,
        "bytes": 128 * 4 + 128 * 8 * 4,
        "by_group_size": {"8": {"count": 1, "bytes": 128 * 4 + 128 * 8 * 4}},
    }
    assert (counted["all-reduce"]["count"], counted["all-reduce"]["bytes"]) == (1, 40)
    assert (counted["all-gather"]["count"], counted["all-gather"]["bytes"]) == (1, 768 * 768 * 2)
