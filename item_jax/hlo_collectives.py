"""The collectives of a compiled step, read from its optimised HLO text.

Counts all-gather, reduce-scatter, all-reduce, all-to-all and collective-permute, with the
bytes each produces per device where the HLO gives a shape. XLA's TPU compiler copies a
collective into the computations that overlap it with compute (`async_collective_fusion`
and friends); the copies share one `channel_id`, so a collective is counted once per
(opcode, channel id). Asynchronous pairs (XLA:GPU makes every collective one) are counted
once, at their `-start`, with the bytes of its results (a start's shape holds its operands
too). Each entry is also split by group size (the devices taking part in one collective,
from `replica_groups`): on the `data x fsdp x tensor` mesh the group size tells a parameter
gather over `fsdp` from a gather of the whole global batch over every data-parallel device.

Compiled for several slices (`--num_slices`), the program holds one slice's collectives
(replica groups within the slice) and, for what crosses slices over the data-centre network,
pairs of host-transfer `send`/`recv` instructions that libtpu's multi-slice runtime carries out
(`_xla_megascale_transfer_type="ALL_REDUCE"` or `"ALL_GATHER"`). Each pair is counted once
(at its `send`, by rendezvous name) under its collective, in the group `ACROSS_SLICES`, with
the bytes one chip sends.
"""

import collections
import re
from typing import NamedTuple

OPCODES = ("all-gather", "reduce-scatter", "all-reduce", "all-to-all", "collective-permute")
DTYPE_BYTES = {
    "pred": 1,
    "s8": 1,
    "u8": 1,
    "s16": 2,
    "u16": 2,
    "f16": 2,
    "bf16": 2,
    "s32": 4,
    "u32": 4,
    "f32": 4,
    "s64": 8,
    "u64": 8,
    "f64": 8,
    "c64": 8,
    "c128": 16,
    "f8e4m3fn": 1,
    "f8e5m2": 1,
    "s4": 0.5,
    "u4": 0.5,
}

_INSTRUCTION = re.compile(
    r"^\s*(?:ROOT\s+)?%?(?P<name>[\w.\-]+)\s*=\s*(?P<shape>.*?)\s+"
    r"(?P<opcode>" + "|".join(OPCODES) + r")(?P<suffix>-start|-done)?\("
)
_ARRAY = re.compile(r"\b([a-z]+[0-9]*[a-z0-9]*)\[([0-9,]*)\]")
_CHANNEL = re.compile(r"channel_id=(\d+)")
# replica_groups as XLA prints them: over named mesh axes, as an iota list, or explicitly.
# The mesh form may carry `device_ids=(...)` before the set of axes in one group.
_MESH_GROUPS = re.compile(r"replica_groups=mesh\[([^\]]*)\][^{]*\{([^}]*)\}")
_IOTA_GROUPS = re.compile(r"replica_groups=\[([0-9,]+)\]<=")
_LIST_GROUPS = re.compile(r"replica_groups=\{\{([0-9,]*)\}")
_PAIRS = re.compile(r"source_target_pairs=\{")
# A cross-slice transfer: a host-transfer send handled by the multi-slice runtime.
_SLICE_SEND = re.compile(
    r"^\s*(?:ROOT\s+)?%?(?P<name>[\w.\-]+)\s*=\s*(?P<shape>.*?)\s+send\(.*"
    r'_xla_host_transfer_rendezvous="(?P<rendezvous>[^"]+)".*'
    r'_xla_megascale_transfer_type="(?P<kind>[A-Z_]+)"'
)
_SLICE_OPCODES = {
    "ALL_REDUCE": "all-reduce",
    "ALL_GATHER": "all-gather",
    "REDUCE_SCATTER": "reduce-scatter",
    "ALL_TO_ALL": "all-to-all",
}
ACROSS_SLICES = "across slices"  # The group of a cross-slice transfer, in place of a size.


def group_size(line: str) -> int | None:
    """Devices in one replica group of a collective's HLO line (None if not given)."""
    match = _MESH_GROUPS.search(line)
    if match:
        sizes = dict(re.findall(r"'([^']+)'=(\d+)", match.group(1)))
        size = 1
        for axis in re.findall(r"'([^']+)'", match.group(2)):
            size *= int(sizes.get(axis, 1))
        return size
    match = _IOTA_GROUPS.search(line)
    if match:
        return int(match.group(1).split(",")[-1])
    match = _LIST_GROUPS.search(line)
    if match:
        return len([member for member in match.group(1).split(",") if member])
    return 2 if _PAIRS.search(line) else None


def shape_bytes(shape_text: str) -> int:
    """Bytes of every array in an HLO shape (a tuple's elements summed; layouts ignored)."""
    total = 0.0
    for dtype, dims in _ARRAY.findall(shape_text):
        if dtype not in DTYPE_BYTES:
            continue
        count = 1
        for dim in filter(None, dims.split(",")):
            count *= int(dim)
        total += count * DTYPE_BYTES[dtype]
    return int(total)


def _top_level_elements(shape_text: str) -> list[str]:
    """The elements of a tuple shape, "(a, (b, c), d)" -> ["a", "(b, c)", "d"]; else [it]."""
    text = re.sub(r"/\*.*?\*/", "", shape_text).strip()
    if not text.startswith("("):
        return [text]
    elements, depth, start = [], 0, 1
    for index, char in enumerate(text):
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth == 0:
                elements.append(text[start:index])
        elif char == "," and depth == 1:
            elements.append(text[start:index])
            start = index + 1
    return [element.strip() for element in elements if element.strip()]


def _result_bytes(opcode: str, suffix: str | None, shape_text: str) -> int:
    if suffix == "-start" and opcode != "all-reduce":
        # An async start's shape is (operands, results[, contexts or scratch]), the operands
        # and results each an array or a tuple of them (XLA:GPU: "((a, b), (a', b'))"):
        # count the results. An all-reduce's start has the results' shape alone.
        elements = _top_level_elements(shape_text)
        if len(elements) >= 2:
            return shape_bytes(elements[1])
    return shape_bytes(shape_text)


class Collective(NamedTuple):
    """One collective of the program."""

    opcode: str
    bytes: int  # Each device's result bytes (sent bytes, for a cross-slice transfer).
    # Devices in one replica group (None if the HLO does not say; ACROSS_SLICES for a
    # transfer between slices).
    group_size: int | str | None
    name: str  # The instruction's name in the HLO.


def collectives(hlo_text: str) -> list[Collective]:
    """Every collective of the program, each once (see the module docstring)."""
    seen = set()
    found = []
    for line in hlo_text.splitlines():
        if "_xla_megascale_transfer_type" in line:
            transfer = _slice_transfer(line)
            if transfer is not None and ("slices", transfer.name) not in seen:
                seen.add(("slices", transfer.name))
                found.append(transfer)
            continue
        match = _INSTRUCTION.match(line)
        if match is None or match.group("suffix") == "-done":
            continue
        opcode = match.group("opcode")
        channel = _CHANNEL.search(line)
        key = (opcode, channel.group(1)) if channel else (opcode, match.group("name"))
        if key in seen:
            continue
        seen.add(key)
        num_bytes = _result_bytes(opcode, match.group("suffix"), match.group("shape"))
        found.append(Collective(opcode, num_bytes, group_size(line), match.group("name")))
    return found


def _slice_transfer(line: str) -> Collective | None:
    """The cross-slice collective a `send` line starts (named by its rendezvous), or None."""
    match = _SLICE_SEND.match(line)
    if match is None:
        return None
    opcode = _SLICE_OPCODES.get(match.group("kind"), match.group("kind").lower())
    # A send's shape is (data, context, token): the data is its first array.
    arrays = _ARRAY.findall(match.group("shape"))
    sent = shape_bytes("{}[{}]".format(*arrays[0])) if arrays else 0
    return Collective(opcode, sent, ACROSS_SLICES, match.group("rendezvous"))


def count_collectives(hlo_text: str) -> dict[str, dict[str, int]]:
    """{opcode: {"count", "bytes", "by_group_size": {size: {"count", "bytes"}}}} per opcode.

    Bytes are each device's result bytes, summed over the collectives.
    """
    totals = collections.OrderedDict(
        (opcode, {"count": 0, "bytes": 0, "by_group_size": {}}) for opcode in OPCODES
    )
    for collective in collectives(hlo_text):
        size = str(collective.group_size)  # A string: the report is JSON.
        entry_of_opcode = totals.setdefault(
            collective.opcode, {"count": 0, "bytes": 0, "by_group_size": {}}
        )
        by_size = entry_of_opcode["by_group_size"].setdefault(size, {"count": 0, "bytes": 0})
        for entry in (entry_of_opcode, by_size):
            entry["count"] += 1
            entry["bytes"] += collective.bytes
    return dict(totals)
