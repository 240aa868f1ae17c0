"""The train step compiled for a TPU slice on CPU (libtpu's compile-only devices).

One small compile for the module (a shrunk tiny config on v5e-4, parameters replicated so
that their bytes can be counted independently); the rest reads it, or needs no compile.
"""

import math

import jax
import pytest
from conftest import small_config
from subprocess_utils import compile_tiny_beyond_memory

from item_jax import accelerators, aot_report, hlo_collectives, sharding, tpu_topology
from item_jax import batch as batch_lib
from item_jax.cli import compile as compile_cli
from item_jax.configs import load_config
from item_jax.model import model_from_config

TOPOLOGY = "v5e-4"


@pytest.fixture(scope="module")
def report():
    config = small_config(**{"mesh.data": 4})
    return config, aot_report.compile_report(config, TOPOLOGY)


@pytest.mark.slow
def test_tiny_step_compiles_for_a_tpu_slice(report):
    config, result = report
    assert result["fits"] and result["chips"] == 4 and result["chip"] == "v5e"
    assert result["mesh"] == {"data": 4, "fsdp": 1, "tensor": 1}
    memory = result["memory"]
    assert memory["hbm_bytes"] == 16 * 2**30
    # XLA's arguments hold at least the state and the batch (TPU layouts pad, never shrink).
    held = memory["params_bytes"] + memory["opt_state_bytes"] + memory["batch_bytes"]
    assert memory["argument_bytes"] >= held
    assert (
        memory["total_bytes"]
        >= memory["argument_bytes"] + memory["temp_bytes"] - memory["donated_bytes"]
    )
    cost = result["cost"]
    assert cost["flops_per_chip"] > 0 and cost["flops_per_step"] == 4 * cost["flops_per_chip"]
    assert cost["step_lower_bound_s"] == max(cost["compute_bound_s"], cost["memory_bound_s"])
    assert cost["max_examples_per_s"] == pytest.approx(
        config.global_batch_size / cost["step_lower_bound_s"]
    )
    # Data parallel: the gradients are summed over the data axis.
    assert result["collectives"]["all-reduce"]["count"] >= 1
    assert result["collectives"]["all-reduce"]["bytes"] >= memory["params_bytes"]
    assert result["param_shardings"]["block_0.mlp_in.kernel"] == "P('fsdp', 'tensor')"


@pytest.mark.slow
def test_shard_itm_partners_gather_no_images_over_the_slice(report):
    config, result = report  # Global partners: the slice gathers the image batch.
    image_bytes = config.global_batch_size * config.model.image_size**2 * 3 * 4
    whole_slice = result["collectives"]["all-gather"]["by_group_size"]["4"]["bytes"]
    assert whole_slice >= image_bytes
    config.masking.itm_partners = "shard"
    try:
        shard = aot_report.compile_report(config, TOPOLOGY)
    finally:
        config.masking.itm_partners = "global"
    by_group = shard["collectives"]["all-gather"]["by_group_size"]
    assert by_group.get("4", {"bytes": 0})["bytes"] <= whole_slice - image_bytes


def test_parameter_and_optimizer_bytes_equal_a_count_of_the_state(report):
    config, result = report
    model = model_from_config(config.model)
    variables = jax.eval_shape(
        lambda: model.init({"params": jax.random.key(0)}, *batch_lib.dummy_model_inputs(model))
    )
    leaves = jax.tree.leaves(variables["params"])
    count = sum(math.prod(leaf.shape) for leaf in leaves)
    assert result["parameters"] == count
    assert result["memory"]["params_bytes"] == 4 * count  # float32, replicated on data=4.
    # AdamW's mu and nu mirror the parameters; the rest are scalar step counters.
    assert 0 <= result["memory"]["opt_state_bytes"] - 2 * 4 * count <= 64


def test_fsdp_shards_the_reported_state():
    config = small_config(**{"mesh.data": 1, "mesh.fsdp": 4})
    _, _, mesh, setup = aot_report.prepare(config, TOPOLOGY)
    assert dict(mesh.shape) == {"data": 1, "fsdp": 4, "tensor": 1}
    per_chip = aot_report.shard_bytes(setup.abstract_state["params"])
    total = sum(leaf.size * 4 for leaf in jax.tree.leaves(setup.abstract_state["params"]))
    assert total / 4 <= per_chip < 0.5 * total  # Small leaves stay replicated.


@pytest.mark.slow
def test_a_step_that_cannot_fit_exits_1_naming_the_shortfall():
    result = compile_tiny_beyond_memory(TOPOLOGY)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "does not fit one v5e chip's 16.00 GiB HBM: over by" in result.stderr
    assert "--config.mesh.fsdp" in result.stderr and "--max_batch" in result.stderr
    assert "Traceback" not in result.stderr
    # libtpu's complaints about the missing TPU VM environment are kept out of the report.
    assert "could not determine TPU" not in result.stderr
    assert "INVALID_ARGUMENT" not in result.stderr
    assert '"fits": false' in result.stdout


def test_bad_topology_names_are_clear_errors():
    with pytest.raises(ValueError, match="known: v5e-1, v5e-4"):
        tpu_topology.parse_slice("v5e-3")
    with pytest.raises(ValueError, match="GENERATION-COUNT"):
        tpu_topology.parse_slice("tpu7x-8")
    v4 = tpu_topology.parse_slice("v4-32")  # Cloud TPU counts v4 TensorCores: 16 chips.
    assert (v4.num_chips, v4.topology_name) == (16, "v4:2x2x4")
    assert tpu_topology.parse_slice("v5litepod-256").topology_name == "v5e:16x16"
    assert tpu_topology.parse_slice("v5p-128").num_chips == 64
    assert tpu_topology.cloud_accelerator_type(tpu_topology.parse_slice("v5e-16")) == (
        "v5litepod-16"
    )
    assert tpu_topology.cloud_accelerator_type(v4) == "v4-32"


def test_missing_libtpu_names_the_install_command(monkeypatch):
    real_find_spec = tpu_topology.importlib.util.find_spec
    monkeypatch.setattr(
        tpu_topology.importlib.util,
        "find_spec",
        lambda name: None if name == "libtpu" else real_find_spec(name),
    )
    with pytest.raises(RuntimeError, match="pip install -r requirements-dev.txt"):
        tpu_topology.topology_devices(tpu_topology.parse_slice(TOPOLOGY))


def test_multi_slice_mesh_puts_the_data_axis_across_slices():
    devices = tpu_topology.topology_devices(tpu_topology.parse_slice(TOPOLOGY), num_slices=2)
    assert len(devices) == 8
    mesh = sharding.make_mesh(small_config(**{"mesh.fsdp": 2}).mesh, devices)
    assert dict(mesh.shape) == {"data": 4, "fsdp": 2, "tensor": 1}
    slices = [[device.slice_index for device in row.flat] for row in mesh.devices]
    assert slices[0] == slices[1] == [0, 0] and slices[2] == slices[3] == [1, 1]
    with pytest.raises(ValueError, match="multiple of the 2 slices"):
        sharding.make_mesh(small_config(**{"mesh.data": 1, "mesh.fsdp": 8}).mesh, devices)


def test_a_mesh_axis_across_physical_axes_still_builds():
    # large.py's fsdp=8 x tensor=4 on a 4x4x4 v5p slice: jax.make_mesh alone refuses it.
    devices = tpu_topology.topology_devices(tpu_topology.parse_slice("v5p-128"))
    mesh = sharding.make_mesh(load_config("large.py").mesh, devices)
    assert dict(mesh.shape) == {"data": 2, "fsdp": 8, "tensor": 4}
    assert sorted(device.id for device in mesh.devices.flat) == sorted(d.id for d in devices)


def test_collectives_are_counted_once_per_channel_with_their_bytes():
    hlo = "\n".join(
        [
            "%fused_computation.1 (p: f32[4,8]) -> f32[16,8] {",
            "  %all-gather.1 = f32[16,8]{1,0:T(8,128)} all-gather(%p), channel_id=3, "
            "replica_groups=mesh['axis_0'=4,'axis_1'=2,'axis_2'=1] {'axis_0','axis_1'}, "
            "dimensions={0}",
            "}",
            "%async_collective_fusion.2 (p: f32[4,8]) -> f32[16,8] {",
            "  %all-gather.2 = f32[16,8]{1,0:T(8,128)S(1)} all-gather(%p), channel_id=3, "
            "replica_groups=mesh['axis_0'=4,'axis_1'=2,'axis_2'=1], device_ids=([2,2]T(1,0)) "
            "{'axis_0','axis_1'}",
            "}",
            "ENTRY %main {",
            "  %all-reduce.5 = (f32[], bf16[32,64]{1,0}) all-reduce(%a, %b), channel_id=7, "
            "replica_groups=[2,4]<=[8]",
            "  %ag-start = (f32[2,8], f32[8,8]) all-gather-start(%c), channel_id=9, "
            "replica_groups={{0,1,2,3},{4,5,6,7}}",
            "  %ag-done = f32[8,8] all-gather-done(%ag-start)",
            "  ROOT %cp = s32[10] collective-permute(%d), channel_id=11",
            "}",
        ]
    )
    counted = hlo_collectives.count_collectives(hlo)
    assert counted["all-gather"] == {
        "count": 2,
        "bytes": 16 * 8 * 4 + 8 * 8 * 4,
        "by_group_size": {
            "8": {"count": 1, "bytes": 16 * 8 * 4},
            "4": {"count": 1, "bytes": 8 * 8 * 4},
        },
    }
    assert counted["all-reduce"] == {
        "count": 1,
        "bytes": 4 + 32 * 64 * 2,
        "by_group_size": {"4": {"count": 1, "bytes": 4 + 32 * 64 * 2}},
    }
    assert counted["collective-permute"]["bytes"] == 40
    assert counted["reduce-scatter"]["count"] == counted["all-to-all"]["count"] == 0


def test_cross_slice_transfers_are_counted_as_collectives_across_slices():
    # As libtpu writes a multi-slice program (a 2-slice compile of configs/tiny.py): the
    # slice's own collectives keep their replica groups; what crosses slices is a host-transfer
    # send/recv pair for the multi-slice runtime, one rendezvous per collective.
    attributes = (
        "is_host_transfer=true, frontend_attributes={{_xla_host_transfer_handler_name="
        '"xla_megascale_runtime",_xla_host_transfer_rendezvous="{name}",{reduce}'
        '_xla_megascale_target="{{1,2}}x{{0:3}}",_xla_megascale_transfer_type="{kind}"}}'
    )
    reduce_sum = '_xla_megascale_reduce_operation="SUM",'
    hlo = "\n".join(
        [
            "ENTRY %main {",
            "  %send.1 = (f32[256,1024]{1,0:T(8,128)}, u32[], token[]) send(%g, %t1), "
            "channel_id=8, "
            + attributes.format(name="all-reduce.5_0", reduce=reduce_sum, kind="ALL_REDUCE"),
            "  %recv.1 = (f32[256,1024]{1,0:T(8,128)}, u32[], token[]) recv(%t1), "
            "channel_id=7, "
            + attributes.format(name="all-reduce.5_0", reduce=reduce_sum, kind="ALL_REDUCE"),
            "  %send.2 = (f32[4,64,64,3]{2,1,3,0:T(8,128)}, u32[], token[]) send(%i, %t2), "
            "channel_id=6, "
            + attributes.format(name="all-gather.2_0", reduce="", kind="ALL_GATHER"),
            "  %all-reduce.9 = f32[64]{0} all-reduce(%a), channel_id=9, replica_groups={{0,1,2,3}}",
            "}",
        ]
    )
    counted = hlo_collectives.count_collectives(hlo)
    assert counted["all-reduce"]["by_group_size"] == {
        hlo_collectives.ACROSS_SLICES: {"count": 1, "bytes": 256 * 1024 * 4},
        "4": {"count": 1, "bytes": 64 * 4},
    }
    assert counted["all-gather"]["by_group_size"] == {
        hlo_collectives.ACROSS_SLICES: {"count": 1, "bytes": 4 * 64 * 64 * 3 * 4}
    }


def test_roofline_is_the_slower_of_compute_and_memory():
    chip = accelerators.chip_by_name("v5e")
    cost = aot_report.roofline(
        dict(flops_per_chip=197e12, bytes_accessed_per_chip=819e9 / 2),
        chip,
        chips=4,
        global_batch_size=64,
        model_flops_per_step=394e12,
    )
    assert cost["bound_by"] == "compute" and cost["step_lower_bound_s"] == pytest.approx(1.0)
    assert cost["max_examples_per_s"] == pytest.approx(64.0)
    assert cost["max_mfu"] == pytest.approx(0.5)  # Half of XLA's FLOPs are counted model FLOPs.
    cost = aot_report.roofline(
        dict(flops_per_chip=1.0, bytes_accessed_per_chip=819e9 * 2),
        chip,
        chips=4,
        global_batch_size=64,
        model_flops_per_step=4.0,
    )
    assert cost["bound_by"] == "memory" and cost["step_lower_bound_s"] == pytest.approx(2.0)


def test_max_batch_bisects_to_the_largest_fitting_multiple(monkeypatch):
    tried = []

    def fake_report(config, topology, num_slices=1):
        tried.append(config.global_batch_size)
        return dict(fits=config.global_batch_size <= 42, global_batch_size=config.global_batch_size)

    monkeypatch.setattr(aot_report, "compile_report", fake_report)
    config = small_config(**{"mesh.data": 4, "global_batch_size": 16})
    best, best_report = aot_report.max_global_batch(config, TOPOLOGY, log=lambda line: None)
    assert best == 40 and best_report["global_batch_size"] == 40  # Multiples of data=4.
    assert tried[:3] == [16, 32, 64] and len(tried) <= 7


def test_max_batch_stops_within_its_tolerance_of_a_large_batch(monkeypatch):
    tried = []

    def fake_report(config, topology, num_slices=1):
        tried.append(config.global_batch_size)
        return dict(fits=config.global_batch_size <= 3000, global_batch_size=0)

    monkeypatch.setattr(aot_report, "compile_report", fake_report)
    config = small_config(**{"mesh.data": 4, "global_batch_size": 16})
    best, _ = aot_report.max_global_batch(config, TOPOLOGY, log=lambda line: None)
    assert 3000 * (1 - aot_report.MAX_BATCH_TOLERANCE) <= best <= 3000 and best % 4 == 0
    # Doubling from 16 to 4,096 takes 9 compiles; an exact bisection 9 more, this one 4.
    assert len(tried) == 13


def test_out_of_memory_messages_are_parsed():
    parsed = aot_report.parse_out_of_memory(
        "RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory required for HLO "
        "temporaries (23.64G) exceeds available HBM (15.75G)."
    )
    assert parsed["shortfall_bytes"] == int(23.64 * 2**30) - int(15.75 * 2**30)
    assert parsed["shortfall_is_lower_bound"]
    parsed = aot_report.parse_out_of_memory(
        "XLA:TPU compile permanent error. Ran out of memory in memory space hbm. Used 20.50G of "
        "15.75G hbm. Exceeded hbm capacity by 4.75G."
    )
    assert parsed["shortfall_bytes"] == int(4.75 * 2**30) and not parsed["shortfall_is_lower_bound"]


def test_the_table_names_fit_and_bound(report):
    _, result = report
    table = compile_cli.format_report(result)
    assert "fits" in table and "lower bound" in table and "all-reduce" in table
