#!/usr/bin/env bash
# Shell helpers shared by launch/local.sh and launch/tpu_pod.sh (sourced, not run).

# Quotes one command so that pasting it into a shell runs exactly it.
quote_command() {
  local arg safe='^[A-Za-z0-9_./:=,@%+-]+$' quoted=()
  for arg in "$@"; do
    if [[ "${arg}" =~ ${safe} ]]; then
      quoted+=("${arg}")
    else
      quoted+=("'${arg//\'/\'\\\'\'}'")
    fi
  done
  echo "${quoted[*]}"
}
