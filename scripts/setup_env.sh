#!/usr/bin/env bash
# Creates (or reuses) .venv and installs mast with its compiled extension.
# torch is installed first and pinned here only (the package itself leaves it
# unpinned); the package is then built with --no-build-isolation because its
# build imports torch, and isolation would make pip resolve a fresh (CUDA) torch.
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
"$PY" -c "import torch, numpy" 2>/dev/null || "$PY" -m pip install -q "$TORCH_SPEC" numpy

stamp="$VENV/.mast-install-stamp"
fingerprint=$(cat setup.py kernels/*.* kernels/*/* 2>/dev/null | sha256sum | cut -d' ' -f1)
fingerprint="$fingerprint ${MAST_REQUIRE_EXTENSION:-0} ${MAST_FORCE_CPU:-0}"
if [ "$(cat "$stamp" 2>/dev/null)" != "$fingerprint" ] || ! "$PY" -c "import mast" 2>/dev/null; then
  "$PY" -m pip install -q --no-build-isolation -e ".[test]"
  echo "$fingerprint" > "$stamp"
fi
"$PY" -c "import mast, mast.ops; print('mast', mast.__version__, '| ops backend (cpu):', mast.ops.backend('cpu'))"
