#!/usr/bin/env bash
# The paired benchmark against the PyTorch peer (Hugging Face ViLT, CPU) at the tiny
# config's dims: alternating rounds, medians, refused on a loaded machine
# (item_jax/benchmarks/vs_peer.py); the peer is item_jax/benchmarks/peer_vilt.py.
#
#   bash launch/bench_vs_peer.sh [PEER_PYTHON] [-- more bench flags]
#
# PEER_PYTHON is a Python with torch and transformers (default /tmp/peer/bin/python, made by
# `python3 -m venv /tmp/peer && /tmp/peer/bin/pip install torch==2.13.0 transformers`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
peer_python="/tmp/peer/bin/python"
if [[ $# -gt 0 && "$1" != "--" ]]; then
  peer_python="$1"
  shift
fi
[[ "${1:-}" == "--" ]] && shift
exec .venv/bin/python -m item_jax.cli.bench vs-peer --config tiny.py \
  --peer_python "${peer_python}" "$@"
