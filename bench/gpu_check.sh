#!/usr/bin/env bash
# JOINT's GPU checks and benchmarks in one prepared run, sized for a lent GPU
# machine (about 6-8 minutes on an H200 after its start): the pure-torch JOINT
# tests (CUDA ones included: LFM against the oracle, predictor on CUDA against
# CPU), then bench_lfm.py and bench_predictor.py on the device, the same figures
# docs/benchmarks.md records for the CPU.
#
#   bash bench/gpu_check.sh                 # writes logs and JSON under $OUT (or bench/out/gpu)
#   PYTHON=.venv/bin/python DEVICE=cpu QUICK=1 bash bench/gpu_check.sh   # a dry run here
#
# It needs only python3 with torch, torchvision, numpy, scipy, pillow and pytest
# (what the lent machines have); Django is not imported: the JOINT tests stop
# their conftest lookup at tests/scoring/joint and skip the CLI/training tests,
# which need the app. QUICK=1 shrinks every size for a smoke run.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-bench/out/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
status=0

if [ -n "${QUICK:-}" ]; then
    lfm_args=(--sizes 256x192,512x384 --repeat 1 --batch 2)
    pred_args=(--images 8 --batch-sizes 4 --rounds 1 --skip-serial)
    pred_compile_args=(--images 8 --batch-sizes 4 --rounds 1 --skip-serial)
    pred_pool_args=(--images 8 --batch-sizes 4 --rounds 1 --skip-serial)
    jpeg_args=(--images 8)
else
    lfm_args=(--repeat 2 --batch 8)
    pred_args=(--images 256 --batch-sizes 1,8,32,128 --rounds 2)
    pred_compile_args=(--images 256 --batch-sizes 32,128 --rounds 2 --skip-serial)
    pred_pool_args=(--images 256 --batch-sizes 32 --rounds 2 --skip-serial)
    jpeg_args=(--images 128)
fi

{
    command -v nvidia-smi >/dev/null && nvidia-smi
    "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
        torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
} 2>&1 | tee "$OUT/machine.txt"

echo "== JOINT tests (pure torch) =="
"$PY" -m pytest -q -p no:cacheprovider -p no:django --confcutdir=tests/scoring/joint \
    tests/scoring/joint/test_lfm.py tests/scoring/joint/test_predictor.py \
    tests/scoring/joint/test_model.py tests/scoring/joint/test_partition.py \
    tests/scoring/joint/test_preprocess.py tests/scoring/joint/test_baselines.py \
    tests/scoring/joint/test_pool.py \
    2>&1 | tee "$OUT/tests.log" || status=1

echo "== LFM: torch on $DEVICE against the NumPy/SciPy oracle =="
"$PY" bench/bench_lfm.py --device "$DEVICE" "${lfm_args[@]}" --json "$OUT/lfm.json" \
    2>&1 | tee "$OUT/lfm.log" || status=1

# Before GPU decoding may feed the predictor: does nvJPEG give Pillow's pixels (the
# partition's seed is a hash of them)? And how much faster is it?
echo "== JPEG decoding: Pillow against decode_jpeg on $DEVICE =="
"$PY" bench/bench_jpeg_decode.py --device "$DEVICE" "${jpeg_args[@]}" --json "$OUT/jpeg.json" \
    2>&1 | tee "$OUT/jpeg.log" || status=1

echo "== predictor on $DEVICE (eager LFM) =="
"$PY" bench/bench_predictor.py --device "$DEVICE" "${pred_args[@]}" --compare-precision \
    --json "$OUT/predictor.json" 2>&1 | tee "$OUT/predictor.log" || status=1

echo "== predictor on $DEVICE (compiled LFM) =="
"$PY" bench/bench_predictor.py --device "$DEVICE" "${pred_compile_args[@]}" \
    --lfm-backend compile --json "$OUT/predictor_compile.json" \
    2>&1 | tee "$OUT/predictor_compile.log" || status=1

# The platform's shape: one predict call per batch task, the pool kept between them
# (the issue's target: at least 60% of the bare forward at batch 32), then the same
# split with a pool started per call, as before the pool.
echo "== predictor on $DEVICE, one call per batch, pool kept between calls =="
"$PY" bench/bench_predictor.py --device "$DEVICE" "${pred_pool_args[@]}" --split-calls \
    --persistent --json "$OUT/predictor_split_pool.json" \
    2>&1 | tee "$OUT/predictor_split_pool.log" || status=1
echo "== predictor on $DEVICE, one call per batch, workers started per call =="
"$PY" bench/bench_predictor.py --device "$DEVICE" "${pred_pool_args[@]}" --split-calls \
    --json "$OUT/predictor_split.json" 2>&1 | tee "$OUT/predictor_split.log" || status=1

exit $status
