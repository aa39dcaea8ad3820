#!/usr/bin/env bash
# Tune postprocessing on DSB *training-split* images, then evaluate on the validation split, for every
# model (classical baseline included). Writes results/<model>.{json,csv,settings.json} and prints the
# README table (scripts/results_table.py); deep mask models are also evaluated with auto_nucleus_size
# (results/<model>+auto-size.*).   Usage: bash scripts/evaluate_all.sh [MODEL ...]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DSB:-../shared/datasets/dsb2018}
TUNE_N=${TUNE_N:-120}
models=("$@")
[ ${#models[@]} -gt 0 ] || mapfile -t models < <(python -c "import cellcount; print('\n'.join(cellcount.list_models()))")
mkdir -p results
for m in "${models[@]}"; do
  echo "== $m: tune on $TUNE_N training-split images"
  extra=()
  [ "$m" != classical-otsu ] && extra=(--write-card)
  python -m cellcount.evaluate --model "$m" --data "$DATA" --split train --limit "$TUNE_N" --tune \
      "${extra[@]}" --save-settings "results/$m.settings.json"
  echo "== $m: validation split"
  python -m cellcount.evaluate --model "$m" --data "$DATA" --split val --settings "results/$m.settings.json" \
      --out "results/$m.csv" --json "results/$m.json" --record-metrics
  if [ "$(python -c "import cellcount; print(cellcount.models.model_card('$m').output_kind)")" = mask ] \
      && [ "$m" != classical-otsu ]; then
    echo "== $m: validation split with auto_nucleus_size (same tuned settings)"
    python -m cellcount.evaluate --model "$m" --data "$DATA" --split val --settings "results/$m.settings.json" \
        --set auto_nucleus_size=true --out "results/$m+auto-size.csv" --json "results/$m+auto-size.json" \
        --record-metrics
  fi
done
python scripts/results_table.py results/*.json
