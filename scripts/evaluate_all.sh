#!/usr/bin/env bash
# Tune postprocessing on DSB *training-split* images, then evaluate on the held-out split (--split heldout: the
# 98 images called the validation split before it was halved into validation and test), for every
# model (classical baseline included). Writes results/<model>.{json,csv,settings.json} and prints the
# README table (scripts/results_table.py). The deep models are tuned and shipped with auto_nucleus_size
# (the card default) and also evaluated without it, same settings otherwise (results/<model>+fixed-size.*).
#   Usage: bash scripts/evaluate_all.sh [MODEL ...]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DSB:-../shared/datasets/dsb2018}
TUNE_N=${TUNE_N:-120}
models=("$@")
# density models first: the mask models' size estimate uses unet-density's count, so its gain is fitted before
[ ${#models[@]} -gt 0 ] || mapfile -t models < <(python -c "
import cellcount
names = cellcount.list_models()
# the default and multihead-unet had their settings chosen on the validation half (docs/gpu_training.md,
# scripts/evaluate_multihead.sh): retuning them here on training images would overwrite that choice
names = [n for n in names if n not in ('unet-mask-varied', 'multihead-unet')]
print('\n'.join(sorted(names, key=lambda n: cellcount.models.model_card(n).output_kind != 'density')))")
mkdir -p results
for m in "${models[@]}"; do
  extra=()
  deep=0
  [ "$m" != classical-otsu ] && deep=1 && extra=(--write-card --auto-nucleus-size)
  echo "== $m: tune on $TUNE_N training-split images"
  python -m cellcount.evaluate --model "$m" --data "$DATA" --split train --limit "$TUNE_N" --tune \
      "${extra[@]}" --save-settings "results/$m.settings.json"
  if [ $deep = 1 ] && [ "$(python -c "import cellcount; print(cellcount.models.model_card('$m').output_kind)")" = density ]; then
    python scripts/make_golden.py "$m"  # the refitted gain (density_scale) scales the model's stored output
  fi
  echo "== $m: validation split"
  python -m cellcount.evaluate --model "$m" --data "$DATA" --split heldout --settings "results/$m.settings.json" \
      --out "results/$m.csv" --json "results/$m.json" --record-metrics
  if [ $deep = 1 ]; then
    echo "== $m: validation split without auto_nucleus_size (same tuned settings)"
    python -m cellcount.evaluate --model "$m" --data "$DATA" --split heldout --settings "results/$m.settings.json" \
        --no-auto-nucleus-size --out "results/$m+fixed-size.csv" --json "results/$m+fixed-size.json" \
        --record-metrics
  fi
done
python scripts/results_table.py results/*.json
