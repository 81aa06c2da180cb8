#!/usr/bin/env bash
# The sparse-kernel GPU grid on one CUDA device, in under 5 minutes (benchmarks/gpu.py says what it
# measures). Needs only torch and msae's own imports: no internet, no peer libraries. Without CUDA
# it prints why and exits 0. Extra arguments go to benchmarks/gpu.py (e.g. --out PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=${PYTHON:-python3}; fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$PY" benchmarks/gpu.py "$@"
