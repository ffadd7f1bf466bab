#!/usr/bin/env bash
# Set up (packages, venv, BPF objects), then log this host's packet headers as NDJSON.
# Arguments go to `hdrlog run`, e.g. ./run.sh -i lo --count 10
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh run
exec .venv/bin/hdrlog run "$@"
