#!/usr/bin/env bash
# Creates (or reuses) .venv and installs mast with its compiled extension.
# torch is installed first and pinned here only (the package itself leaves it
# unpinned). mast is then built with --no-build-isolation, against that torch:
# an isolated build would install a second torch just to build with (the
# registry's default, a multi-GB CUDA build), and the extension has to be
# compiled against the torch it runs with.
# The install is skipped when nothing it depends on changed since the last one.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${MAST_VENV:-.venv}
TORCH_SPEC=${MAST_TORCH_SPEC:-torch==2.13.0}
PYTHON=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel
fi
PY="$VENV/bin/python"
# pyproject.toml states its licence as an SPDX expression, which setuptools reads from 77 on;
# --no-build-isolation builds with the venv's own setuptools (Python 3.11's venv brings 65).
"$PY" -c "import setuptools, sys; sys.exit(int(setuptools.__version__.split('.')[0]) < 77)" 2>/dev/null \
  || "$PY" -m pip install -q --upgrade "setuptools>=77" wheel
"$PY" -c "import torch, numpy" 2>/dev/null || "$PY" -m pip install -q "$TORCH_SPEC" numpy

stamp="$VENV/.mast-install-stamp"
log="$VENV/mast-install.log"
torch_version=$("$PY" -c "from importlib.metadata import version; print(version('torch'))")
fingerprint=$(cat setup.py mast_build.py pyproject.toml kernels/*.* kernels/*/* 2>/dev/null | sha256sum | cut -d' ' -f1)
fingerprint="$fingerprint torch=$torch_version ${MAST_REQUIRE_EXTENSION:-0} ${MAST_FORCE_CPU:-0}"
fingerprint="$fingerprint ${TORCH_CUDA_ARCH_LIST:-} ${CUDA_HOME:-}"
if [ "$(cat "$stamp" 2>/dev/null)" != "$fingerprint" ] || ! "$PY" -c "import mast" 2>/dev/null; then
  echo "installing mast and compiling mast._C (minutes with CUDA kernels); log: $log"
  # -v: only a verbose pip passes on the build's output, and with it the "mast build:" lines.
  if ! "$PY" -m pip install -v --no-build-isolation -e ".[test]" > "$log" 2>&1; then
    tail -n 40 "$log"
    echo "installing mast failed; full log: $log" >&2
    exit 1
  fi
  grep -o 'mast build: .*' "$log" || true
  echo "$fingerprint" > "$stamp"
fi
"$PY" -c "import mast, mast.ops as o; print('mast', mast.__version__, '| ops backend: cpu', o.backend('cpu') + ', cuda', o.backend('cuda'))"
