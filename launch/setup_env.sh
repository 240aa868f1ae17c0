#!/usr/bin/env bash
# Prepares a machine to run item_jax: Debian packages, the .venv and its Python packages.
#
# Idempotent and quick to re-run: Debian packages are installed only when missing, the
# virtual environment only when absent, and pip runs only when requirements.txt (or the
# accelerator) changed since the last successful install.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
readonly VENV_DIR="${REPO_ROOT}/.venv"
readonly STAMP_FILE="${VENV_DIR}/.requirements.sha256"
readonly MIN_PYTHON_MINOR=11

usage() {
  cat <<EOF
Usage: bash launch/setup_env.sh [--accelerator cpu|tpu|gpu] [--dev] [--no-apt] [--dry-run]

Sets up ${REPO_ROOT}/.venv for item_jax. Safe to run again; re-runs are fast.

  --accelerator KIND  cpu (default): requirements.txt only; tpu: adds jax[tpu] (libtpu);
                      gpu: adds jax[cuda12] (CUDA wheels).
  --dev               also what the tests use: shellcheck, git and chromium (Debian; chromium
                      renders the HTML evaluation report headless), and the test
                      extras of requirements-dev.txt (torch, transformers, libtpu).
  --no-apt            skip the Debian package check.
  --dry-run           print what would be installed, change nothing.
  -h, --help          this text.

Debian packages are installed as root or with password-less sudo; otherwise the missing
ones are listed. PYTHON=/path/to/python3.11 picks the interpreter.
EOF
}

accelerator="cpu"
with_dev_tools=0
check_apt=1
dry_run=0

parse_args() {
  while (($#)); do
    case "$1" in
      --accelerator) accelerator="${2:?--accelerator needs cpu, tpu or gpu}"; shift 2 ;;
      --accelerator=*) accelerator="${1#*=}"; shift ;;
      --dev) with_dev_tools=1; shift ;;
      --no-apt) check_apt=0; shift ;;
      --dry-run) dry_run=1; shift ;;
      -h|--help) usage; exit 0 ;;
      *) echo "setup_env.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
  done
  case "${accelerator}" in
    cpu|tpu|gpu) ;;
    *) echo "setup_env.sh: --accelerator must be cpu, tpu or gpu, got '${accelerator}'" >&2
       exit 2 ;;
  esac
}

log() { echo "[setup_env] $*" >&2; }

# Runs a command, or only prints it under --dry-run.
run() {
  if ((dry_run)); then
    echo "$*"
  else
    "$@"
  fi
}

# Prints the first interpreter of at least Python 3.MIN_PYTHON_MINOR, or nothing.
find_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3 python3.13 python3.12 "python3.${MIN_PYTHON_MINOR}"; do
    if [[ -z "${candidate}" ]] || ! command -v "${candidate}" >/dev/null 2>&1; then
      continue
    fi
    if "${candidate}" -c "import sys; sys.exit(sys.version_info < (3, ${MIN_PYTHON_MINOR}))"; then
      echo "${candidate}"
      return
    fi
  done
}

python_minor_version() {
  "$1" -c 'import sys; print(f"{sys.version_info.major}.{sys.version_info.minor}")'
}

is_debian_package_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

# Lists the Debian packages this machine still needs, one a line.
missing_debian_packages() {
  # libtcmalloc-minimal4: the allocator item_jax's commands start on (item_jax/allocator.py).
  local python="$1" wanted=(ca-certificates libtcmalloc-minimal4) package
  if [[ -z "${python}" ]]; then
    wanted+=("python3.${MIN_PYTHON_MINOR}" "python3.${MIN_PYTHON_MINOR}-venv")
  elif ! "${python}" -c "import ensurepip, venv" >/dev/null 2>&1; then
    wanted+=("python$(python_minor_version "${python}")-venv")
  fi
  if ((with_dev_tools)); then
    wanted+=(shellcheck git chromium)
  fi
  for package in "${wanted[@]}"; do
    is_debian_package_installed "${package}" || echo "${package}"
  done
}

# Prints the prefix that gives root rights ("" as root, "sudo" with password-less sudo), or
# fails when neither is available.
root_prefix() {
  if ((EUID == 0)); then
    echo ""
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    echo "sudo"
  else
    return 1
  fi
}

install_debian_packages() {
  local python="$1" missing prefix
  if ((!check_apt)) || ! command -v dpkg-query >/dev/null 2>&1; then
    return
  fi
  mapfile -t missing < <(missing_debian_packages "${python}")
  if ((${#missing[@]} == 0)); then
    log "Debian packages: all present."
    return
  fi
  if ! prefix="$(root_prefix)"; then
    log "missing Debian packages (not root, no password-less sudo): ${missing[*]}"
    log "install them with: sudo apt-get install -y ${missing[*]}"
    return
  fi
  log "installing Debian packages: ${missing[*]}"
  run ${prefix:+"${prefix}"} apt-get update
  run ${prefix:+"${prefix}"} env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}"
}

# The hash that decides whether pip must run again.
requirements_hash() {
  {
    cat "${REPO_ROOT}/requirements.txt"
    echo "accelerator=${accelerator}"
    if ((with_dev_tools)); then
      cat "${REPO_ROOT}/requirements-dev.txt"
    fi
  } | sha256sum | cut -d' ' -f1
}

# Accelerator wheels that match the jax pinned in requirements.txt.
accelerator_requirement() {
  local jax_version
  jax_version="$(sed -n 's/^jax==\([^[:space:]]*\).*/\1/p' "${REPO_ROOT}/requirements.txt")"
  case "${accelerator}" in
    tpu) echo "jax[tpu]${jax_version:+==${jax_version}}" ;;
    gpu) echo "jax[cuda12]${jax_version:+==${jax_version}}" ;;
  esac
}

install_python_packages() {
  local python="$1" wanted_hash extra
  if [[ ! -x "${VENV_DIR}/bin/python" ]]; then
    log "creating ${VENV_DIR} with ${python}"
    run "${python}" -m venv "${VENV_DIR}"
  fi
  wanted_hash="$(requirements_hash)"
  if [[ -f "${STAMP_FILE}" && "$(cat "${STAMP_FILE}")" == "${wanted_hash}" ]]; then
    log "Python packages: up to date (${STAMP_FILE})."
    return
  fi
  log "installing Python packages from requirements.txt (accelerator: ${accelerator})"
  local requirement_files=(-r "${REPO_ROOT}/requirements.txt")
  if ((with_dev_tools)); then
    requirement_files+=(-r "${REPO_ROOT}/requirements-dev.txt")
  fi
  run "${VENV_DIR}/bin/python" -m pip install --disable-pip-version-check \
    "${requirement_files[@]}"
  extra="$(accelerator_requirement)"
  if [[ -n "${extra}" ]]; then
    run "${VENV_DIR}/bin/python" -m pip install --disable-pip-version-check "${extra}"
  fi
  if ((!dry_run)); then
    echo "${wanted_hash}" >"${STAMP_FILE}"
  fi
}

main() {
  parse_args "$@"
  cd "${REPO_ROOT}"
  local python
  python="$(find_python)"
  install_debian_packages "${python}"
  if [[ -z "${python}" ]]; then
    python="$(find_python)"
  fi
  if [[ -z "${python}" ]] && ((!dry_run)); then
    log "no Python >= 3.${MIN_PYTHON_MINOR} found; install python3.${MIN_PYTHON_MINOR}" \
      "and python3.${MIN_PYTHON_MINOR}-venv, or set PYTHON=/path/to/python3"
    exit 1
  fi
  install_python_packages "${python:-python3.${MIN_PYTHON_MINOR}}"
  log "ready: ${VENV_DIR}/bin/python"
}

main "$@"
