#!/usr/bin/env bash
# The whole test suite: install dev requirements, lint, run every test: -m "" lifts the default selection
# (pyproject addopts), so slow and browser tests run too (browser tests need Debian's chromium; .ci/run
# installs it). Plain `python -m pytest` is the fast loop.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -r requirements-dev.txt
python -m ruff check .
python -m pytest -q -m "" "$@"
