#!/usr/bin/env bash
# Set up (packages, venv, BPF objects), then run the whole test suite.
# Arguments go to pytest, e.g. ./test.sh tests/unit -x
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh test
exec .venv/bin/python -m pytest "$@"
