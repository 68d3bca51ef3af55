#!/usr/bin/env bash
# Set up if needed, then run the whole test suite (CPU only, no network beyond the package index).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
exec .venv/bin/python -m pytest --durations=25 "$@"
