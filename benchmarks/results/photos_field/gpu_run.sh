#!/usr/bin/env bash
# Issue 23's photo-set run on a GPU machine: the same commands as benchmarks/photos_field.sh
# (same budgets, metrics and resume identity), spread over ranks that share the one GPU
# (--nproc), on the photo set copied from the CPU machine (photos:PATH, so the same bytes), into
# copies of the committed databases (maps table emptied to travel; merged back there).
# Stops itself DEADLINE seconds after it starts, merges the ranks' shards, writes to $OUT.
set -u
cd "$(dirname "$0")/.."
T0=$(date +%s)
DEADLINE=${DEADLINE:-500}
NP0=${NP0:-7}
NP2=${NP2:-8}
DEVICE=${DEVICE:-cuda}
WORK=${WORK:-/tmp/field}
OUT=${OUT:-/tmp/field_out}
EXTRA=${EXTRA:-}
mkdir -p "$WORK" "$OUT"
if [ -d .devrun/whl ] && [ "$DEVICE" = cuda ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .devrun/whl/*.whl || exit 1
    export PYTHONPATH=$PWD/src:/tmp/site
fi
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1
{
    date -u; nproc --all; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
    python3 -c "import torch, torchvision, timm, scipy, skimage, numpy, PIL, captum, sise
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'tv', torchvision.__version__,
 'timm', timm.__version__, 'scipy', scipy.__version__, 'skimage', skimage.__version__,
 'numpy', numpy.__version__, 'PIL', PIL.__version__, 'captum', captum.__version__, sise.__file__)"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
for name in lite0 lite2; do  # a second call on a warm machine goes on from its own copies
    [ -f "$WORK/$name.sqlite" ] || cp ".devrun/$name.sqlite" "$WORK/$name.sqlite"
done

METRICS=ebpg,miou,bbox,drop,increase,pointing,insertion,deletion,distractor
METRICS+=,road_morf,road_lerf,road,road_morf_kept,road_lerf_kept,road_kept
METRICS+=,adcc,adcc_coherency,adcc_complexity,adcc_drop,randomisation
common() {  # name model limit nproc
    echo --dataset "photos:$PWD/.devrun/photos" --model "$2" --limit "$3" --steps 56 \
        --metrics "$METRICS" --db "$WORK/$1.sqlite" --no-progress --device "$DEVICE" \
        --nproc "$4" --batch-size 64 --pack 2 --workers 0 --out "$WORK/out_$1" $EXTRA
}
run_model() {
    local name=$1 model=$2 limit=$3 np=$4
    echo "== $name main $(date -u +%T)"
    python3 -m sise.cli benchmark $(common "$@") --option rise.n_masks=2000 \
        --option extremal.iterations=300 --option extremal.areas=0.1
    for s in 0.03 0.05 0.1; do
        echo "== $name smoothing $s $(date -u +%T)"
        python3 -m sise.cli benchmark $(common "$@") --methods sise \
            --option "sise.smoothing=$s" --name "photos_${model}_sise_smoothing_$s"
    done
    echo "== $name done $(date -u +%T)"
}
export -f common run_model
export METRICS DEVICE WORK EXTRA

# GPU against CPU: the first images again (already on record from the CPU), one process
setsid bash -c "python3 -m sise.cli benchmark --dataset photos:$PWD/.devrun/photos \
    --model efficientnet_lite0 --limit ${CHECK_LIMIT:-3} --steps 56 --metrics $METRICS \
    --db $WORK/check_lite0.sqlite --no-progress --device $DEVICE --batch-size 64 --pack 2 \
    --workers 0 --out $WORK/out_check $EXTRA --option rise.n_masks=2000 \
    --option extremal.iterations=300 --option extremal.areas=0.1" >"$WORK/check.log" 2>&1 &
check=$!
setsid bash -c "run_model lite0 efficientnet_lite0 ${LIMIT0:-165} $NP0" >"$WORK/lite0.log" 2>&1 &
p0=$!
setsid bash -c "run_model lite2 efficientnet_lite2 ${LIMIT2:-90} $NP2" >"$WORK/lite2.log" 2>&1 &
p2=$!

configs() {  # configurations registered in a results file (a new one: the run would restart)
    python3 -c "import sqlite3, sys
print(sqlite3.connect(sys.argv[1]).execute('SELECT COUNT(*) FROM configs').fetchone()[0])" "$1"
}
rows() {  # result rows in a model's file and its ranks' shards
    python3 -c "import glob, re, sqlite3, sys
files = [f for f in glob.glob(sys.argv[1] + '*') if re.search(r'sqlite(\.rank\d+)?$', f)]
n = 0
for f in files:
    try:
        n += sqlite3.connect(f'file:{f}?mode=ro', uri=True).execute(
            'SELECT COUNT(*) FROM results').fetchone()[0]
    except sqlite3.Error:
        pass
print(n)" "$1"
}
guarded=0; last=0
while [ $(( $(date +%s) - T0 )) -lt "$DEADLINE" ]; do
    kill -0 $p0 2>/dev/null || kill -0 $p2 2>/dev/null || kill -0 $check 2>/dev/null || break
    now=$(( $(date +%s) - T0 ))
    if [ $guarded = 0 ] && [ $now -ge 75 ]; then
        guarded=1
        for name in lite0 lite2; do
            if [ "$(configs "$WORK/$name.sqlite")" != "$(configs ".devrun/$name.sqlite")" ]; then
                echo "!! $name registered a new configuration: the resume identity differs; stopping"
                DEADLINE=0
            fi
        done
    fi
    if [ $(( now - last )) -ge 60 ]; then
        last=$now
        echo "t=${now}s rows lite0 $(rows "$WORK/lite0.sqlite") lite2 $(rows "$WORK/lite2.sqlite")"
    fi
    sleep 2
done
for pid in $check $p0 $p2; do kill -TERM -- -"$pid" 2>/dev/null; done
sleep 4
for pid in $check $p0 $p2; do kill -KILL -- -"$pid" 2>/dev/null; done
sleep 1
echo "stopped at $(( $(date +%s) - T0 )) s"

# every rank's finished pairs into its model's file (what a next run's rank 0 would do)
python3 - "$WORK" "$OUT" <<'EOF'
import shutil, sqlite3, sys
from pathlib import Path
from sise.eval.benchmark.distributed import merge_shards
from sise.eval.benchmark.store import ResultStore
work, out = Path(sys.argv[1]), Path(sys.argv[2])
for name in ("lite0", "lite2", "check_lite0"):
    db = work / f"{name}.sqlite"
    if not db.is_file():
        continue
    with ResultStore(db) as store:
        merged = merge_shards(store, db)
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        pairs = conn.execute(
            "SELECT COUNT(*) FROM (SELECT DISTINCT image_id, class_index, config_id FROM results)"
        ).fetchone()[0]
    print(f"{name}: {merged} rows merged from shards; {rows} rows, {pairs} (pair, config)")
    shutil.copy(db, out / f"{name}.sqlite")
EOF
tar -czf "$OUT/logs.tar.gz" -C "$WORK" $(cd "$WORK" && ls *.log) 2>/dev/null
tail -n 5 "$WORK"/*.log
echo "total $(( $(date +%s) - T0 )) s"
