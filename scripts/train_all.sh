#!/usr/bin/env bash
# Train every shipped model from its committed config, one after another (2-core CPU: ~20 min each).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p logs
for name in "${@:-unet-mask unet-density residual-unet-mask attention-unet-mask}"; do
  for n in $name; do
    echo "== training $n"
    python -m cellcount.train --config "configs/$n.yaml" 2>&1 | tee "logs/$n.log"
  done
done
