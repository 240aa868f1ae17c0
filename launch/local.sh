#!/usr/bin/env bash
# Runs item_jax on this machine: the demo job, the tests or a training run, after
# launch/setup_env.sh has made sure the .venv is ready.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT

usage() {
  cat <<'EOF'
Usage: bash launch/local.sh [--dry-run] COMMAND [ARGS...]

Commands:
  demo [ARGS]   python -m item_jax.cli.main_job --workdir runs/demo ARGS
                (default catalog -> shards -> configs/demo.py training -> evaluation)
  test [ARGS]   ruff format --check and ruff check (the tree must be clean under both), then
                python -m pytest tests -q -n 2 --dist loadfile ARGS (two worker processes)
  train ARGS    python -m item_jax.cli.train ARGS, e.g.
                train --config configs/tiny.py:runlocal --workdir runs/tiny \
                      --config.data.dir runs/demo/shards

Each command first runs launch/setup_env.sh. --dry-run (before or right after COMMAND, or
DRY_RUN=1) prints the commands instead of running them. The exit code is the command's.
demo and train run JAX on the CPU (JAX_PLATFORMS=cpu) on a machine with no NVIDIA GPU or
TPU device file and no JAX_PLATFORMS of its own.
EOF
}

dry_run="${DRY_RUN:-0}"

# shellcheck source=launch/common.sh
source "${REPO_ROOT}/launch/common.sh"

# JAX on a machine without an accelerator: the CPU, said outright. Otherwise JAX probes every
# installed plugin, and the test extras' libtpu and CUDA plugin (`test` installs them) each
# print a page of errors on a machine without their chip before JAX settles on the CPU.
has_accelerator() {
  compgen -G "/dev/nvidia[0-9]*" >/dev/null || compgen -G "/dev/accel[0-9]*" >/dev/null ||
    compgen -G "/dev/vfio/[0-9]*" >/dev/null
}

# Runs a command from the repo root, or only prints it under --dry-run.
run() {
  if ((dry_run)); then
    quote_command "$@"
  else
    "$@"
  fi
}

main() {
  if [[ "${1:-}" == "--dry-run" ]]; then
    dry_run=1
    shift
  fi
  local command="${1:-}"
  shift || true
  if [[ "${1:-}" == "--dry-run" ]]; then
    dry_run=1
    shift
  fi
  local python=".venv/bin/python" setup=(bash launch/setup_env.sh) lint=0
  case "${command}" in
    demo) set -- "${python}" -m item_jax.cli.main_job --workdir runs/demo "$@" ;;
    test)
      setup+=(--dev)
      lint=1
      set -- "${python}" -m pytest tests -q -n 2 --dist loadfile "$@" ;;
    train)
      if (($# == 0)); then
        echo "local.sh: train needs arguments (--config ... --workdir ...)" >&2
        usage >&2
        exit 2
      fi
      set -- "${python}" -m item_jax.cli.train "$@" ;;
    -h|--help) usage; exit 0 ;;
    *)
      echo "local.sh: unknown command '${command}'" >&2
      usage >&2
      exit 2 ;;
  esac
  if [[ "${command}" != test && -z "${JAX_PLATFORMS:-}" ]] && ! has_accelerator; then
    export JAX_PLATFORMS=cpu
  fi
  cd "${REPO_ROOT}"
  run "${setup[@]}"
  if ((lint)); then
    run .venv/bin/ruff format --check --quiet .
    run .venv/bin/ruff check --quiet .
  fi
  run "$@"
}

main "$@"
