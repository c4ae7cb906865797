#!/usr/bin/env bash
# Set up .venv and run the test suite (C core tests + pytest). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh torch,serve,dev,notebooks,mlflow
exec .venv/bin/python -m pytest "$@"
