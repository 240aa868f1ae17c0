#!/usr/bin/env bash
# Trains item_jax on a Cloud TPU VM or pod slice: creates (or reuses) the TPU, ships the
# code to every worker, sets each one up and runs the same `python -m item_jax.cli.train`
# command on all of them. JAX finds the pod by itself (jax.distributed.initialize() with no
# arguments), so no coordinator flags are passed.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
# Each TPU VM worker learns its index from the metadata server.
readonly METADATA_WORKER_URL="http://metadata.google.internal/computeMetadata/v1/instance/\
attributes/agent-worker-number"

usage() {
  cat <<'EOF'
Usage: bash launch/tpu_pod.sh --name NAME --zone ZONE [options] -- TRAIN_ARGS...

Everything after -- goes to `python -m item_jax.cli.train` on every worker, e.g.
  bash launch/tpu_pod.sh --name item-v4 --zone us-central2-b --accelerator_type v4-32 \
      -- --config configs/base.py --workdir gs://BUCKET/runs/base \
         --config.data.dir gs://BUCKET/shards

Options:
  --name NAME              TPU VM (or queued resource) name.            (required)
  --zone ZONE              e.g. us-central2-b.                          (required)
  --accelerator_type TYPE  e.g. v4-32, v5p-64, v5litepod-16. Default v4-8.
  --version RUNTIME        TPU software version. Default by family: v4 tpu-ubuntu2204-base,
                           v5p v2-alpha-tpuv5, v5litepod v2-alpha-tpuv5-lite,
                           v6e v2-alpha-tpuv6e.
  --project PROJECT        GCP project (default: gcloud's configured one).
  --queued                 create through a queued resource and wait until it is ACTIVE.
  --spot                   ask for spot capacity.
  --ref GIT_REF            what to ship (git archive of it). Default HEAD.
  --remote_dir DIR         code directory on the workers. Default item_jax (in $HOME).
  --copy_data DIR          also copy local shards DIR to REMOTE_DIR/data/$(basename DIR) on
                           every worker (then pass --config.data.dir data/$(basename DIR)).
  --skip_create            the TPU exists; do not describe or create it.
  --skip_setup             do not copy the code or run setup_env.sh (already done).
  --teardown               delete the TPU when the script exits (success or failure).
  --dry-run                print every command, one a line, and run none.
  -h, --help               this text.

Each worker writes its output to REMOTE_DIR/logs/train.log; worker 0 also streams it here.
Follow worker 0 again after a disconnect with:
  gcloud compute tpus tpu-vm ssh NAME --zone ZONE --worker=0 \
      --command 'tail -n 100 -F item_jax/logs/train.log'
EOF
}

name=""
zone=""
accelerator_type="v4-8"
runtime_version=""
project=""
queued=0
spot=0
git_ref="HEAD"
remote_dir="item_jax"
copy_data=""
skip_create=0
skip_setup=0
teardown=0
dry_run=0
train_args=()

die() {
  echo "tpu_pod.sh: $*" >&2
  exit 2
}

parse_args() {
  while (($#)); do
    case "$1" in
      --name) name="${2:?--name needs a value}"; shift 2 ;;
      --zone) zone="${2:?--zone needs a value}"; shift 2 ;;
      --accelerator_type) accelerator_type="${2:?--accelerator_type needs a value}"; shift 2 ;;
      --version) runtime_version="${2:?--version needs a value}"; shift 2 ;;
      --project) project="${2:?--project needs a value}"; shift 2 ;;
      --ref) git_ref="${2:?--ref needs a value}"; shift 2 ;;
      --remote_dir) remote_dir="${2:?--remote_dir needs a value}"; shift 2 ;;
      --copy_data) copy_data="${2:?--copy_data needs a directory}"; shift 2 ;;
      --queued) queued=1; shift ;;
      --spot) spot=1; shift ;;
      --skip_create) skip_create=1; shift ;;
      --skip_setup) skip_setup=1; shift ;;
      --teardown) teardown=1; shift ;;
      --dry-run) dry_run=1; shift ;;
      -h|--help) usage; exit 0 ;;
      --) shift; train_args=("$@"); break ;;
      *) usage >&2; die "unknown argument '$1' (train arguments go after --)" ;;
    esac
  done
  [[ -n "${name}" ]] || die "--name is required"
  [[ -n "${zone}" ]] || die "--zone is required"
  ((${#train_args[@]})) || die "no train arguments: add -- --config ... --workdir ..."
  [[ "${remote_dir}" =~ ^[A-Za-z0-9_./-]+$ ]] \
    || die "--remote_dir may hold only letters, digits and _./- (got '${remote_dir}')"
  [[ -z "${copy_data}" || -d "${copy_data}" || "${dry_run}" == 1 ]] \
    || die "--copy_data: '${copy_data}' is not a directory"
  [[ -n "${runtime_version}" ]] || runtime_version="$(default_runtime_version)"
}

default_runtime_version() {
  case "${accelerator_type}" in
    v4-*) echo "tpu-ubuntu2204-base" ;;
    v5p-*) echo "v2-alpha-tpuv5" ;;
    v5litepod-*|v5e-*) echo "v2-alpha-tpuv5-lite" ;;
    v6e-*) echo "v2-alpha-tpuv6e" ;;
    *) die "no default --version for accelerator type '${accelerator_type}'; pass --version" ;;
  esac
}

# shellcheck source=launch/common.sh
source "${REPO_ROOT}/launch/common.sh"

# Runs a command, or only prints it under --dry-run.
run() {
  if ((dry_run)); then
    quote_command "$@"
  else
    echo "+ $(quote_command "$@")" >&2
    "$@"
  fi
}

# Flags every gcloud call shares.
location_flags() {
  echo "--zone=${zone}"
  [[ -z "${project}" ]] || echo "--project=${project}"
}

gcloud_tpus() {
  local flags
  mapfile -t flags < <(location_flags)
  run gcloud compute tpus "$@" "${flags[@]}"
}

tpu_exists() {
  local flags
  mapfile -t flags < <(location_flags)
  local describe=(gcloud compute tpus tpu-vm describe "${name}" "${flags[@]}"
    --format='value(state)')
  if ((dry_run)); then
    quote_command "${describe[@]}"
    return 1  # A dry run plans for a TPU that does not exist yet.
  fi
  "${describe[@]}" >/dev/null 2>&1
}

create_tpu() {
  local capacity=()
  ((spot)) && capacity=(--spot)
  if ((queued)); then
    gcloud_tpus queued-resources create "${name}" --node-id="${name}" \
      --accelerator-type="${accelerator_type}" --runtime-version="${runtime_version}" \
      "${capacity[@]}"
    wait_until_active
  else
    gcloud_tpus tpu-vm create "${name}" --accelerator-type="${accelerator_type}" \
      --version="${runtime_version}" "${capacity[@]}"
  fi
}

wait_until_active() {
  local flags state
  mapfile -t flags < <(location_flags)
  local describe=(gcloud compute tpus queued-resources describe "${name}" "${flags[@]}"
    --format='value(state.state)')
  if ((dry_run)); then
    quote_command "${describe[@]}"
    return
  fi
  while true; do
    state="$("${describe[@]}")"
    echo "queued resource ${name}: ${state}" >&2
    case "${state}" in
      ACTIVE) return ;;
      FAILED|SUSPENDED) echo "tpu_pod.sh: queued resource ${name} is ${state}" >&2; exit 1 ;;
    esac
    sleep 30
  done
}

delete_tpu() {
  if ((queued)); then
    gcloud_tpus queued-resources delete "${name}" --force --quiet
  else
    gcloud_tpus tpu-vm delete "${name}" --quiet
  fi
}

ssh_all_workers() {
  gcloud_tpus tpu-vm ssh "${name}" --worker=all --command="$1"
}

ship_code() {
  local tarball="${TMPDIR:-/tmp}/item_jax-${name}.tar.gz"
  if ((!dry_run)) && [[ -n "$(git -C "${REPO_ROOT}" status --porcelain)" ]]; then
    echo "tpu_pod.sh: warning: uncommitted changes are not shipped (git archive ${git_ref})" >&2
  fi
  run git -C "${REPO_ROOT}" archive --format=tar.gz --output="${tarball}" "${git_ref}"
  gcloud_tpus tpu-vm scp "${tarball}" "${name}:item_jax.tar.gz" --worker=all
  ((dry_run)) || rm -f "${tarball}"
  # Keep the workers' .venv, runs/, data/ and logs/ so that re-runs skip the installs.
  ssh_all_workers "mkdir -p ${remote_dir} && find ${remote_dir} -mindepth 1 -maxdepth 1 \
! -name .venv ! -name runs ! -name data ! -name logs -exec rm -rf {} + && \
tar -xzf item_jax.tar.gz -C ${remote_dir} && \
bash ${remote_dir}/launch/setup_env.sh --accelerator tpu"
}

ship_data() {
  local source="${copy_data%/}"
  ssh_all_workers "mkdir -p ${remote_dir}/data"
  gcloud_tpus tpu-vm scp --recurse "${source}" "${name}:${remote_dir}/data/" --worker=all
}

# The command each worker runs: train, log to a file, and stream only worker 0's output.
worker_train_command() {
  local train
  train="$(quote_command .venv/bin/python -m item_jax.cli.train "${train_args[@]}")"
  echo "cd ${remote_dir} && mkdir -p logs && \
worker=\$(curl -sf -H Metadata-Flavor:Google ${METADATA_WORKER_URL} || echo 0) && \
if [ \"\$worker\" = 0 ]; then ${train} 2>&1 | tee logs/train.log; exit \"\${PIPESTATUS[0]}\"; \
else ${train} >logs/train.log 2>&1; fi"
}

main() {
  parse_args "$@"
  if ((teardown)); then
    trap delete_tpu EXIT
  fi
  if ((!skip_create)) && ! tpu_exists; then
    create_tpu
  fi
  ((skip_setup)) || ship_code
  [[ -z "${copy_data}" ]] || ship_data
  ssh_all_workers "$(worker_train_command)"
}

main "$@"
