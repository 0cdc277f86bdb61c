#!/usr/bin/env bash
# The photo-set tables with the field's model-truth rows (ROAD, ADCC, model randomisation), both
# real models, all eight methods at the README tables' budgets, then SISE at the documented
# smoothing values on the same pairs, then the choice of a SISE setting
# (benchmarks/faithfulness_confirm.py). Everything resumes where it stopped: interrupt it at any
# time and run it again. On a 2-core CPU the two models run side by side, one thread each;
# NPROC=K spreads each model over K processes instead (sise benchmark --nproc, which also lets
# several processes share one GPU), and SMOOTHING picks the SISE settings and their order.
#
#   bash benchmarks/photos_field.sh            # both models, then the confirmation
#   MODELS=lite0 NPROC=2 SMOOTHING=0.05 bash benchmarks/photos_field.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results/photos_field}
MODELS=${MODELS:-"lite0 lite2"}
SMOOTHING=${SMOOTHING:-"0.03 0.05 0.1"}
NPROC=${NPROC:-1}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
METRICS=ebpg,miou,bbox,drop,increase,pointing,insertion,deletion,distractor
METRICS+=,road_morf,road_lerf,road,road_morf_kept,road_lerf_kept,road_kept
METRICS+=,adcc,adcc_coherency,adcc_complexity,adcc_drop,randomisation
mkdir -p "$OUT"

run_model() {  # name, timm model, images: the eight methods, then each SISE setting
    local name=$1 model=$2 limit=$3
    local common=(--dataset photos --model "$model" --limit "$limit" --steps 56
        --metrics "$METRICS" --db "$OUT/$name.sqlite" --no-progress)
    if [ "$NPROC" -gt 1 ]; then common+=(--nproc "$NPROC"); fi
    sise benchmark "${common[@]}" --option rise.n_masks=2000 \
        --option extremal.iterations=300 --option extremal.areas=0.1
    for s in $SMOOTHING; do
        sise benchmark "${common[@]}" --methods sise --option "sise.smoothing=$s" \
            --name "photos_${model}_sise_smoothing_$s"
    done
}

for name in $MODELS; do
    case $name in
        lite0) run_model lite0 efficientnet_lite0 165 >>"$OUT/lite0.log" 2>&1 & ;;
        lite2) run_model lite2 efficientnet_lite2 90 >>"$OUT/lite2.log" 2>&1 & ;;
        *) echo "unknown model $name (lite0, lite2)" >&2; exit 2 ;;
    esac
done
wait
dbs=()
for name in $MODELS; do dbs+=("$OUT/$name.sqlite"); done
python benchmarks/faithfulness_confirm.py "${dbs[@]}" --out "$OUT/confirm.md"
