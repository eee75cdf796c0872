#!/usr/bin/env bash
# On a CUDA machine whose python3 already has a CUDA torch: build the extension
# with its CUDA kernels in place, run the whole test suite (CUDA tests included)
# and the GPU benchmarks. Logs and JSON go to ${OUT:-gpu-check/}.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-check}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$("$PY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
echo "== build (arch $TORCH_CUDA_ARCH_LIST)"
MAST_REQUIRE_EXTENSION=1 MAX_JOBS=${MAX_JOBS:-16} "$PY" setup.py build_ext --inplace > "$OUT/build.log" 2>&1 \
  || { tail -40 "$OUT/build.log"; exit 1; }
"$PY" -c "import mast.ops as o; print('backend cpu:', o.backend('cpu'), '| cuda:', o.backend('cuda'))" | tee -a "$OUT/gpu.txt"
echo "== tests"
timeout ${TEST_TIMEOUT:-300} "$PY" -m pytest -q -p no:cacheprovider tests 2>&1 | tee "$OUT/pytest.log" | tail -15
status=${PIPESTATUS[0]}
echo "== benchmarks"
timeout ${BENCH_TIMEOUT:-240} "$PY" -m benchmarks.ops --device cuda --repeats 5 --out "$OUT/ops-cuda.json" 2>&1 | tail -8
timeout ${BENCH_TIMEOUT:-240} "$PY" -m benchmarks.propagate --device cuda --frames ${FRAMES:-60} --presets mast,quick --out "$OUT/propagate-cuda.json" 2>&1 | tail -6
exit "$status"
