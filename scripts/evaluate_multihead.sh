#!/usr/bin/env bash
# The default model's evaluation, in the order that keeps the test part honest:
#  1. postprocessing tuned on the DSB *validation* half (cellcount.training.data.dsb_part), written into the card;
#  2. the quality flag's limits calibrated on the same validation half (at most 20% flagged);
#  3. the validation figures recorded in the card;
#  4. the DSB *test* half scored once, this model and the earlier models beside it (none trained on it);
#  5. the quality flag on vgg_cells and mbm (other data, no training on them): flagged share, large errors held.
# Writes results/<model>.{val,test}.{csv,json}, results/<model>.{vgg_cells,mbm}.{csv,json}.
#   Usage: bash scripts/evaluate_multihead.sh [MODEL]   (default multihead-unet; OTHERS="unet-mask ..." to compare)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DSB:-../shared/datasets/dsb2018}
M=${1:-multihead-unet}
OTHERS=${OTHERS-"unet-mask residual-unet-mask attention-unet-mask unet-density classical-otsu"}
mkdir -p results
echo "== $M: tune on the validation half"
python -m cellcount.evaluate --model "$M" --data "$DATA" --split val --tune --write-card \
    --save-settings "results/$M.settings.json"
python scripts/make_golden.py "$M"  # the stored output a test reproduces
echo "== $M: quality flag calibrated on the validation half; validation metrics"
python -m cellcount.evaluate --model "$M" --data "$DATA" --split val --calibrate-quality --write-card \
    --record-metrics --out "results/$M.val.csv" --json "results/$M.val.json"
echo "== test half (scored once)"
for m in "$M" $OTHERS; do
  python -m cellcount.evaluate --model "$m" --data "$DATA" --split test --out "results/$m.test.csv" \
      --json "results/$m.test.json"
done
for set in vgg_cells mbm; do
  echo "== $M on $set (never trained on)"
  python -m cellcount.evaluate --model "$M" --data "../shared/datasets/$set" --out "results/$M.$set.csv" \
      --json "results/$M.$set.json"
done
