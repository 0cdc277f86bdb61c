#!/usr/bin/env bash
# GPU check of the fast path, to run as-is on a machine with one CUDA GPU (H100/H200), from any
# directory, with this repository's .venv carried along (no pip install needed or possible).
#
#   bash benchmarks/gpu_check.sh            # about 2-4 minutes on an H100 after the venv loads
#
# It prints, and saves under benchmarks/results/ (or $OUT), for ResNet-50 at 224x224 on cuda:
#   1. the engine tests (tests/test_engine.py, CPU + meta device, ~10 s);
#   2. the speed table: SISE fixed/adaptive in fp32 and in bf16 + channels_last, this package's
#      Score-CAM and RISE (N=4000), torch-cam and pytorch-grad-cam Score-CAM on layer4, all at
#      the same batch size (auto: fitted to free GPU memory in fp32, capped at 512);
#   3. the fidelity of the bf16 maps to the fp32 maps (Pearson r per map, target > 0.99);
#   4. the host-sync check of the masked-forward loop (torch.cuda.set_sync_debug_mode "error").
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=$(command -v python3 || command -v python); fi
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
STAMP=$(date -u +%Y%m%d-%H%M)
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"   # in case the editable install did not travel

"$PY" - <<'PY'
import importlib.util
import torch
assert torch.cuda.is_available(), "no CUDA device visible"
import sise, torchvision  # noqa: F401  (required)
for name in ("torchcam", "pytorch_grad_cam", "pytest"):  # optional: skipped with a note
    print(f"{name}: {'yes' if importlib.util.find_spec(name) else 'MISSING'}")
print("torch", torch.__version__, "cuda", torch.version.cuda, "|", torch.cuda.get_device_name(0))
free, total = torch.cuda.mem_get_info()
print(f"free {free / 2**30:.1f} GiB of {total / 2**30:.1f} GiB")
PY

if "$PY" -c "import pytest" 2>/dev/null; then
    timeout 120 "$PY" -m pytest -q -p no:cacheprovider tests/test_engine.py || echo "ENGINE TESTS FAILED"
fi

timeout 480 "$PY" benchmarks/speed.py --model resnet50 --size 224 --device cuda \
    --repeats 3 --fast bf16+cl --rise-masks 4000 --multi-images 4 \
    --out "$OUT/${STAMP}_resnet50_224_cuda.txt"

# bf16 fidelity on real weights (the random-init ResNet-50 above scores every masked input about
# the same, which makes its fidelity easy): the packaged EfficientNet-Lite0, SISE rows only.
timeout 240 "$PY" benchmarks/speed.py --model demo --size 224 --device cuda \
    --repeats 3 --fast bf16+cl --methods sise,sise-adaptive,sise-fast,sise-adaptive-fast \
    --out "$OUT/${STAMP}_demo_224_cuda.txt"
