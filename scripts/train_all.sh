#!/usr/bin/env bash
# Train every shipped model from its committed config, one after another (this 2-core CPU, bf16: 30-55 min
# each on one thread). A config named <name>-finetune.yaml is a second stage that starts from the weights
# the first stage wrote (init.from) and runs right after it.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p logs
for name in "${@:-unet-mask unet-density residual-unet-mask attention-unet-mask}"; do
  for n in $name; do
    echo "== training $n"
    python -m cellcount.train --config "configs/$n.yaml" 2>&1 | tee "logs/$n.log"
    if [ -f "configs/$n-finetune.yaml" ]; then
      echo "== second stage $n (configs/$n-finetune.yaml)"
      python -m cellcount.train --config "configs/$n-finetune.yaml" 2>&1 | tee "logs/$n-finetune.log"
    fi
  done
done
