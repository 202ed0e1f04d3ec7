#!/usr/bin/env bash
# lip_det on a CUDA GPU in one go: correctness against float64, the lip2d op rows, the backbone and
# detector pairs (float32 and AMP), 100 AMP iterations, and train_net on the quick config.
#   bash tools/gpu_check.sh [LOG_DIR]      # default output/gpu_check; one log per stage there
# Each stage has its own time limit; a failed stage does not stop the next. A short table comes last.
# About 7 minutes on one H200 with the bundle's setup (docs/results.md lists what each stage took).
set -u
cd "$(dirname "$0")/.."
logs=${1:-output/gpu_check}
mkdir -p "$logs"
py=(python3 -X faulthandler)
table=()

stage() {  # stage NAME SECONDS COMMAND...: runs COMMAND with a time limit, its output into LOG_DIR/NAME.log
  local name=$1 limit=$2 start=$SECONDS status rc
  shift 2
  echo "== $name (limit ${limit} s): $*"
  timeout --kill-after=10 "$limit" "$@" > "$logs/$name.log" 2>&1
  rc=$?
  case $rc in
    0) status=ok ;;
    124 | 137) status="timed out" ;;
    *) status="failed (exit $rc)" ;;
  esac
  grep -v -e 'it/s]' -e 'warnings.warn' -e 'FutureWarning' "$logs/$name.log" | tail -n 60
  table+=("$(printf '| %-12s | %-18s | %5d |' "$name" "$status" $((SECONDS - start)))")
}

stage env 30 "${py[@]}" -c "import torch, triton; print(torch.__version__, 'triton', triton.__version__, \
torch.cuda.get_device_name(), torch.cuda.get_device_properties(0).total_memory // 2**20, 'MiB')"
stage correctness 150 "${py[@]}" -m pytest -q -x -p no:cacheprovider tests/test_cuda.py
stage op 100 "${py[@]}" tools/benchmark.py --skip-models --op-shape 20 32 128 128 --dtypes float32 bfloat16 float16 --repeats 20
stage op_large 70 "${py[@]}" tools/benchmark.py --skip-models --op-shape 8 256 112 112 --dtypes float32 bfloat16 --repeats 20
stage backbones 110 "${py[@]}" tools/benchmark.py --backbones-only --repeats 10
stage detectors 80 "${py[@]}" tools/benchmark.py --skip-op --skip-backbones --image-size 800 1344 --repeats 10
stage amp 60 "${py[@]}" tools/benchmark.py --amp-check 100
stage train 100 "${py[@]}" tools/train_net.py --config-file configs/quick/faster_rcnn_lip_r18_shapes.yaml \
  MODEL.DEVICE cuda OUTPUT_DIR "${TMPDIR:-/tmp}/lip_det_gpu_check/quick"

echo
echo "| stage        | status             |     s |"
echo "|--------------|--------------------|-------|"
printf '%s\n' "${table[@]}"
