#!/usr/bin/env bash
# Set up .venv and run the main job. GTSRB_ROOT selects real data; otherwise data is synthesised.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
exec .venv/bin/neonsign main "$@"
