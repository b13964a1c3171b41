#!/usr/bin/env bash
# Install treedec into ./.venv on a fresh machine (Debian/Ubuntu, Python 3.10+).
#   bash scripts/install.sh          # the service and CLI
#   bash scripts/install.sh --test   # plus test dependencies, redis-server and bubblewrap
set -euo pipefail
cd "$(dirname "$0")/.."
WITH_TEST=0
[[ "${1:-}" == "--test" ]] && WITH_TEST=1

if [[ $WITH_TEST == 1 ]] || ! command -v bwrap >/dev/null; then
  if command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
    pkgs=(bubblewrap)
    [[ $WITH_TEST == 1 ]] && pkgs+=(redis-server)
    missing=()
    for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    if (( ${#missing[@]} )); then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
  else
    echo "note: install bubblewrap (and redis-server for the tests) with your package manager" >&2
  fi
fi

# The real interpreter, not a pyenv shim.
PY=$(python3 -c 'import os, sys; print(os.path.realpath(sys.executable))')
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
export PIP_DISABLE_PIP_VERSION_CHECK=1
# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
.venv/bin/pip install -q torch==2.13.0
if [[ $WITH_TEST == 1 ]]; then
  .venv/bin/pip install -q -e '.[test]'
else
  .venv/bin/pip install -q -e .
fi
# Verify and convert the bundled model once (about a minute); later loads take seconds.
.venv/bin/treedec models install bundled-default
