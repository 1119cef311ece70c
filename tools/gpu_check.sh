#!/usr/bin/env bash
# Build lossx with CUDA on a GPU machine that has no network (the lent H100/H200),
# then run the CUDA tests and the GPU benchmark. Highway comes from Debian packages
# unpacked into .hwy/ beforehand (see README, "GPU machine"):
#   mkdir -p .hwy && (cd /tmp && apt-get download libhwy-dev libhwy1) && for f in /tmp/libhwy*.deb; do dpkg -x $f .hwy; done
# Liger-Kernel for the benchmark's comparison, if its wheel was downloaded into
# .whl/ (pure Python; the GPU machine has triton with its PyTorch):
#   mkdir -p .whl && pip download --no-deps -d .whl liger-kernel==0.8.5
# Usage: bash tools/gpu_check.sh [OUTDIR]   (SANITIZE=1: also tools/gpu_sanitize.py under
# compute-sanitizer's memcheck, racecheck and initcheck; SKIP_BENCH=1: no benchmark)
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR=${1:-${OUT:-/tmp/lossx-gpu}}
mkdir -p "$OUTDIR"
export HWY_ROOT=$PWD/.hwy
export LD_LIBRARY_PATH=$HWY_ROOT/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
export LOSSX_CUDA=ON LOSSX_CUDA_ARCH=${LOSSX_CUDA_ARCH:-90} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUTDIR/gpu.txt"
python3 -m pip install -q --no-build-isolation --no-deps . 2>&1 | tail -20 | tee "$OUTDIR/build.log" || exit 1
python3 -m lossx info | tee "$OUTDIR/info.json"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-deps --no-index .whl/*.whl 2>&1 | tail -3
fi
(cd tests && python3 -m pytest -q -p no:cacheprovider cuda/ 2>&1) | tee "$OUTDIR/tests_cuda.log"
if [ -n "${SANITIZE:-}" ]; then
  # Races and uninitialised reads that give the right numbers on one run (opt-in: minutes).
  CS=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null | head -1)
  for tool in memcheck racecheck initcheck; do
    if [ -n "$CS" ]; then
      timeout 300 "$CS" --tool $tool --error-exitcode 1 python3 tools/gpu_sanitize.py > "$OUTDIR/sanitize_$tool.log" 2>&1
      echo "compute-sanitizer $tool: rc=$?" | tee -a "$OUTDIR/sanitize.txt"
    fi
  done
fi
(cd tests && python3 -m pytest -q -p no:cacheprovider --ignore=cuda . 2>&1 | tail -5) | tee "$OUTDIR/tests_cpu.log"
if [ -z "${SKIP_BENCH:-}" ] && [ -f benchmarks/gpu_bench.py ]; then
  python3 benchmarks/gpu_bench.py --out "$OUTDIR/gpu_bench.json" 2>&1 | tee "$OUTDIR/gpu_bench.log"
fi
