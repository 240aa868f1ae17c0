#!/usr/bin/env bash
# Times item_jax's tiny train step and the peer (Hugging Face ViLT in PyTorch, CPU) at the
# same dims, one after the other on this machine, and prints one JSON line for each.
#
#   bash launch/bench_vs_peer.sh [PEER_PYTHON]
#
# PEER_PYTHON is a Python with torch and transformers (default /tmp/peer/bin/python, made by
# `python3 -m venv /tmp/peer && /tmp/peer/bin/pip install torch==2.13.0 transformers`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
peer_python="${1:-/tmp/peer/bin/python}"
peer_script="../shared/bench/peer_vilt.py"
steps="${STEPS:-10}"

if [[ ! -x "${peer_python}" ]]; then
  echo "bench_vs_peer.sh: no peer Python at ${peer_python} (see the header of this script)" >&2
  exit 2
fi
if [[ ! -f "${peer_script}" ]]; then
  echo "bench_vs_peer.sh: ${peer_script} not found (the shared/ folder beside the repo)" >&2
  exit 2
fi
"${peer_python}" "${peer_script}" --hidden 256 --layers 4 --heads 4 --mlp 1024 --image 64 \
  --patch 8 --text 32 --vocab 8000 --batch 32 --steps "${steps}"
# The peer trains ViLT's objectives only: compare with ITEm's five (no contrastive views).
.venv/bin/python -m item_jax.cli.bench train --config configs/tiny.py --steps "${steps}" \
  --config.objectives=itm,mlm,mim,gmlm,gmim 2>/dev/null
