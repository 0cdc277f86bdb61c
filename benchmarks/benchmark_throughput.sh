#!/usr/bin/env bash
# `sise benchmark` throughput on one GPU: SISE and Grad-CAM on a random-init ResNet-50 (6 classes) at
# 224 px over the synthetic test split, one pair per call (old behaviour) against packed calls
# with DataLoader prefetching. Writes the databases and logs to $OUT (default /tmp/out).
#   LIMIT=40 bash benchmarks/benchmark_throughput.sh     # about 2.5 minutes on an H100
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
PY=${PY:-python3}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
DEV=${DEV:-cuda}; LIMIT=${LIMIT:-32}; STEPS=${STEPS:-}
$PY - <<'PY'
import time, torch, torchvision
t = time.time()
from sise.eval.data.synthetic import synthetic_dataset
synthetic_dataset("/tmp/syn")
torch.manual_seed(0)
torch.save(torchvision.models.resnet50(num_classes=6).state_dict(), "/tmp/r50.pt")
print(f"data + weights {time.time() - t:.1f} s;", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")
PY
run() {  # name methods pack workers
  local s=$EPOCHREALTIME
  $PY -m sise.cli benchmark --dataset synthetic:/tmp/syn --model resnet50 --checkpoint /tmp/r50.pt \
    --size 224 --device $DEV --methods $2 --limit $LIMIT --pack $3 --workers $4 ${STEPS:+--steps $STEPS} \
    --db "$OUT/$1.sqlite" --no-progress > "$OUT/$1.log" 2>&1 || { echo "$1 FAILED"; tail -5 "$OUT/$1.log"; }
  echo "$1 wall $(awk "BEGIN {print $EPOCHREALTIME - $s}") s"
}
run sise_p1_w0 ${SISE:-sise} 1 0
run sise_p8_w4 ${SISE:-sise} 8 4
run gradcam_p1_w0 gradcam 1 0
run gradcam_p8_w4 gradcam 8 4
$PY - "$OUT" <<'PY'
import sqlite3, sys
out = sys.argv[1]
def stats(name, pack):
    c = sqlite3.connect(f"{out}/{name}.sqlite")
    rows = c.execute("select image_id, class_index, value, seconds, created, metric from results").fetchall()
    created = sorted({(r[0], r[1]): r[4] for r in rows}.values())
    n = len(created)
    # steady state: from the end of the first call (warm-up: cuDNN autotuning, layer discovery)
    steady = (n - pack) / (created[-1] - created[pack - 1]) if n > pack else float("nan")
    expl = sum({(r[0], r[1]): r[3] for r in rows}.values()) / n
    return n, steady, expl, {(r[0], r[1], r[5]): r[2] for r in rows}
for m in ("sise", "gradcam"):
    a, b = stats(f"{m}_p1_w0", 1), stats(f"{m}_p8_w4", 8)
    print(f"{m}: pairs {a[0]}; steady pairs/s one-by-one {a[1]:.2f}, packed {b[1]:.2f} (x{b[1]/a[1]:.2f}); explanation s/pair {a[2]:.4f} vs {b[2]:.4f}")
    diffs = {}
    for k, v in a[3].items():
        diffs[k[2]] = max(diffs.get(k[2], 0.0), abs(v - b[3][k]))
    print("  max |packed - one-by-one| per metric:", {k: round(v, 4) for k, v in sorted(diffs.items())})
    print(f"  7k pairs (VOC07 test) at the packed rate: {7000 / b[1] / 3600:.2f} h (one method)")
PY
for f in "$OUT"/*.log; do grep -E "^\| (EBPG|Seconds|Pairs)" "$f" | sed "s|^|$(basename $f): |"; done
