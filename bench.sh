#!/usr/bin/env bash
# Set up (packages, venv, BPF objects, the benchmark's tools), then run the benchmark:
# bench/run.py with the arguments (results in bench/results/; with --micro, bench/micro.py's
# numbers too). E.g. ./bench.sh --quick --observers none,hdrlog-http --phase fixed
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh bench
exec .venv/bin/python bench/run.py "$@"
