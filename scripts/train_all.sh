#!/usr/bin/env bash
# Train every shipped model from its committed config, one after another (this 2-core CPU, bf16: 30-55 min
# each on one thread). Configs named <name>-finetune.yaml, <name>-finetune2.yaml, ... are further stages that
# start from the weights the previous stage wrote (init.from); they run right after it, in that order.
# The default, unet-mask-varied, was trained on a GPU: scripts/gpu_train.sh (docs/TRAINING.md "On a GPU").
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p logs
for name in "${@:-unet-mask unet-density residual-unet-mask attention-unet-mask}"; do
  for n in $name; do
    echo "== training $n"
    python -m cellcount.train --config "configs/$n.yaml" 2>&1 | tee "logs/$n.log"
    for stage in $(ls "configs/$n"-finetune*.yaml 2>/dev/null | sort); do
      echo "== next stage $n ($stage)"
      python -m cellcount.train --config "$stage" 2>&1 | tee "logs/$(basename "$stage" .yaml).log"
    done
  done
done
