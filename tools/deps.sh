#!/usr/bin/env bash
# System packages lossx builds against (Debian/Ubuntu): Highway (SIMD), Google
# Benchmark (C++ benchmark), a C++ compiler with OpenMP. Installs only what is missing.
set -euo pipefail
need=()
for pkg in libhwy-dev libbenchmark-dev g++ cmake; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
