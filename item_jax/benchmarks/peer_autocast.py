"""Runs the peer script under PyTorch's CPU bf16 autocast: the peer's side of a bf16 pairing.

  <peer python> item_jax/benchmarks/peer_autocast.py PEER_SCRIPT [peer flags]

`item_jax.cli.bench vs-peer --precision bfloat16` starts it in the peer's Python (torch,
transformers), never in item_jax's; it imports nothing from item_jax. Autocast runs the
peer's matmuls on bf16 operands (float32 parameters and optimizer), the mixed precision
item_jax's `model.compute_dtype=bfloat16` is. The peer's JSON line gains
`"autocast": "bfloat16"`.
"""

import contextlib
import io
import json
import runpy
import sys

import torch


def main():
    if len(sys.argv) < 2:
        raise SystemExit("usage: peer_autocast.py PEER_SCRIPT [peer flags]")
    script = sys.argv[1]
    sys.argv = [script] + sys.argv[2:]
    output = io.StringIO()
    with torch.autocast("cpu", dtype=torch.bfloat16), contextlib.redirect_stdout(output):
        runpy.run_path(script, run_name="__main__")
    for line in output.getvalue().splitlines():
        if line.startswith("{"):
            line = json.dumps(dict(json.loads(line), autocast="bfloat16"))
        print(line, flush=True)


if __name__ == "__main__":
    main()
