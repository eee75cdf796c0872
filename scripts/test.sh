#!/usr/bin/env bash
# Set up the environment (see setup_env.sh) and run the test suite.
set -euo pipefail
export MAST_REQUIRE_EXTENSION=${MAST_REQUIRE_EXTENSION:-1}
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/python -m pytest -q "$@"
