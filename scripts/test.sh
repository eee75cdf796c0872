#!/usr/bin/env bash
# Set up the environment (see setup_env.sh) and run the test suite.
# MAST_REQUIRE_EXTENSION=1 makes a failed build of mast._C an error instead of
# a silent fall-back to the pure-PyTorch operators (see setup.py for what it requires).
set -euo pipefail
export MAST_REQUIRE_EXTENSION=${MAST_REQUIRE_EXTENSION:-1}
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/python -m pytest -q "$@"
