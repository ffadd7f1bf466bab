#!/usr/bin/env bash
# Set up (packages, venv, BPF objects, the benchmark's tools), then run the benchmark:
# bench/run.py with the arguments (results in bench/results/), and with --micro also
# bench/micro.py. E.g. ./bench.sh --quick --observers none,hdrlog-http --phase fixed
set -euo pipefail
cd "$(dirname "$0")"
micro=0
args=()
for a in "$@"; do
  if [ "$a" = --micro ]; then micro=1; else args+=("$a"); fi
done
scripts/setup.sh bench
.venv/bin/python bench/run.py "${args[@]}"
if [ "$micro" = 1 ]; then
  .venv/bin/python bench/micro.py
fi
