#!/usr/bin/env bash
# The checks only a CUDA machine can run (bf16 tiny recipes, DDP with 2 GPUs, EGL rendering,
# pytorch3d, GPU benchmark rows), one table at the end. `--dry-run` lists them.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${VLX_PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
exec "$PY" scripts/gpu_check.py "$@"
