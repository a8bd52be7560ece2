#!/usr/bin/env bash
# The test command: sets up .venv on first use, then lints and runs the test suite (CPU, offline).
# Extra arguments go to pytest, e.g. `bash run_tests.sh -k render -x`.
set -euo pipefail
cd "$(dirname "$0")"
source ./tools/setup_env.sh
"$PYTHON" -m ruff check .
"$PYTHON" -c "import torch; print('CUDA tier (tests marked cuda): ' + ('runs on ' + torch.cuda.get_device_name(0)
      if torch.cuda.is_available() else 'skipped, no CUDA device'))"
"$PYTHON" -m pytest "$@"
