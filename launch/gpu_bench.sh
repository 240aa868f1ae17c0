#!/usr/bin/env bash
# The first GPU's figures in one run (docs/performance.md says how long it takes): installs
# the CUDA build of jax into .venv, then benchmarks the base config's train step in bfloat16
# (examples/s, step ms, MFU from counted FLOPs against the chip's bf16 peak, memory per
# device) with JAX's default attention and with cuDNN's fused attention, and the base input
# pipeline with this host's cores. Each benchmark appends one JSON line to OUT.
#
#   bash launch/gpu_bench.sh [--dry-run] [--out runs/gpu_bench.jsonl] [--steps 20] [--batch 256]
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
# shellcheck source=launch/common.sh
source "${REPO_ROOT}/launch/common.sh"

usage() {
  cat <<'USAGE'
Usage: bash launch/gpu_bench.sh [--dry-run] [--out FILE] [--steps N] [--batch N]

  --out FILE   JSON lines are appended here (default runs/gpu_bench.jsonl).
  --steps N    timed train steps per benchmark (default 20).
  --batch N    global batch of the train-step benchmarks (default 256).
  --dry-run    print the commands instead of running them.
USAGE
}

out="runs/gpu_bench.jsonl"
steps=20
batch=256
dry_run=0
while (($#)); do
  case "$1" in
    --out) out="${2:?--out needs a file}"; shift 2 ;;
    --steps) steps="${2:?--steps needs a number}"; shift 2 ;;
    --batch) batch="${2:?--batch needs a number}"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu_bench.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

# Runs a command (its stdout appended to $out as well), or only prints it under --dry-run.
bench() {
  if ((dry_run)); then
    quote_command "$@"
  else
    "$@" | tee -a "${out}"
  fi
}

cd "${REPO_ROOT}"
if ((dry_run)); then
  quote_command bash launch/setup_env.sh --accelerator gpu --no-apt
else
  bash launch/setup_env.sh --accelerator gpu --no-apt
  mkdir -p "$(dirname "${out}")"
fi
python=.venv/bin/python
train=("${python}" -m item_jax.cli.bench train --config configs/base.py --steps "${steps}"
       "--config.global_batch_size=${batch}" "--config.objectives=itm,mlm,mim,gmlm,gmim")
bench "${train[@]}"
bench "${train[@]}" --config.model.attention_implementation=cudnn
bench "${python}" -m item_jax.cli.bench input --config configs/base.py --batches 100
