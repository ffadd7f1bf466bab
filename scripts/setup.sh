#!/usr/bin/env bash
# Sets up everything hdrlog needs on Debian 12 (as root), idempotently:
# system packages, the Python virtual environment, and the BPF objects.
#   scripts/setup.sh run    what `hdrlog run` needs
#   scripts/setup.sh test   that, and the servers and tools the tests drive
#   scripts/setup.sh bench  that, and the server, load generators and observers bench/ drives
set -euo pipefail
cd "$(dirname "$0")/.."
purpose=${1:-run}

# clang/llvm/libbpf-dev/bpftool/make build the BPF objects; libssl3 is what TLS logging probes
PACKAGES=(clang llvm libbpf-dev libbpf1 bpftool make python3 python3-venv python3-dev iproute2 libssl3)
if [ "$purpose" = test ]; then
  PACKAGES+=(iputils-ping curl nginx-light tshark openssl ethtool util-linux procps)
fi
if [ "$purpose" = bench ]; then
  PACKAGES+=(nginx-light openssl wrk nghttp2-client tcpdump tshark procps)
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root (it installs packages and loads eBPF programs)" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's Python, so the environment is the same on every Debian 12 machine
if [ ! -x .venv/bin/python ]; then
  /usr/bin/python3 -m venv .venv
fi
extra=""
[ "$purpose" = test ] && extra="[test]"
[ "$purpose" = bench ] && extra="[bench]"
stamp=.venv/.hdrlog-installed-$purpose
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --disable-pip-version-check -e ".$extra"
  touch "$stamp"
fi

make -s -C bpf
