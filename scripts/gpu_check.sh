#!/usr/bin/env bash
# Device checks for a lent GPU machine (run from the repo root there; results under $OUT):
#   1. every gpu-marked test of the suite (diffusers/open_clip/OpenGait/deep rPPG on CUDA), then the
#      in-process transformers backend tests and the deep rPPG module (they use CUDA when present),
#   2. benchmarks/rppg_deep_gpu.py (deep rPPG inference, CUDA vs CPU in the same run).
# Packages missing from the machine's image travel as wheels in .whl/ (see README, "GPU checks").
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } | tee "$OUT/device.txt"
python3 -m pytest -q -p no:cacheprovider -o addopts="" --timeout 300 -rs -m gpu tests/ 2>&1 \
  | tee "$OUT/gpu_tests.log"
gpu_rc=${PIPESTATUS[0]}
python3 -m pytest -q -p no:cacheprovider -o addopts="" --timeout 300 -rs \
  -m "not gpu and not slow" tests/test_rppg_deep.py tests/test_models_hf.py 2>&1 | tee -a "$OUT/gpu_tests.log"
tests_rc=${PIPESTATUS[0]}
[ "$gpu_rc" -ne 0 ] && tests_rc=$gpu_rc
timeout 240 python3 benchmarks/rppg_deep_gpu.py --seconds 60 --batch 8 2>&1 | tee "$OUT/rppg_deep_gpu.txt"
echo "tests exit code: $tests_rc" | tee -a "$OUT/device.txt"
exit "$tests_rc"
