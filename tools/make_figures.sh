#!/usr/bin/env bash
# Regenerate every figure of the README and docs/ (images/figures/*.jpg) from the bundled models and images.
# Offline, on the CPU, in about a minute; sets up .venv on first use. The models were trained with the
# offline loss network, not VGG16: see models/README.md, and tools/make_demo_models.sh to retrain them.
set -euo pipefail
cd "$(dirname "$0")/.."
source ./tools/setup_env.sh
exec "$PYTHON" tools/make_figures.py "$@"
