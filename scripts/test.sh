#!/usr/bin/env bash
# The whole test suite: install dev requirements, lint, run every test (browser tests included when
# Debian's chromium is installed; .ci/run installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -r requirements-dev.txt
python -m ruff check .
python -m pytest -q "$@"
