#!/usr/bin/env bash
# Set up the environment if needed and run the mast command (default: the demo).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh >&2
if [ "$#" -eq 0 ]; then set -- demo; fi
exec .venv/bin/mast "$@"
