#!/usr/bin/env bash
# Train several configs side by side on one GPU within a time budget, then pack each model folder with its log.
#   bash scripts/gpu_train.sh DATA_ROOT OUT_DIR BUDGET_S CONFIG...
# Each run gets BUDGET_S seconds of training after its data is ready (train.time_budget_s); a run still going
# BUDGET_S + GRACE_S (default 240) s after the start is stopped and its best checkpoint so far is kept
# (state.pt: scripts/checkpoint_to_model.py makes it a model folder). OUT_DIR/<name>.tar holds weights/<name>/ and <name>.log.
set -u
data=$1; out=$2; budget=$3; shift 3
work=$(mktemp -d)
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$out/gpu.txt" 2>&1
for cfg in "$@"; do
  name=$(basename "$cfg" .yaml)
  timeout $((budget + ${GRACE_S:-240})) "$py" -m cellcount.train --config "$cfg" --name "$name" --data.root "$data" \
    --train.time_budget_s "$budget" --out_dir "$work/weights" --run_dir "$work/runs" > "$work/$name.log" 2>&1 &
done
wait
for cfg in "$@"; do
  name=$(basename "$cfg" .yaml)
  if [ ! -f "$work/weights/$name/weights.safetensors" ] && [ -f "$work/runs/$name/checkpoint.pt" ]; then
    echo "$name: stopped before its end; weights/$name/state.pt is its best checkpoint so far" >> "$work/$name.log"
    mkdir -p "$work/weights/$name"
    "$py" -c "import sys, torch; ck = torch.load(sys.argv[1], map_location='cpu', weights_only=True); \
torch.save({'net': ck.get('best_net') or ck['net'], 'step': ck['step'], 'history': ck['history']}, sys.argv[2])" \
      "$work/runs/$name/checkpoint.pt" "$work/weights/$name/state.pt" >> "$work/$name.log" 2>&1
  fi
  tail -n 25 "$work/$name.log"
  tar -C "$work" -cf "$out/$name.tar" "$name.log" $( [ -d "$work/weights/$name" ] && echo "weights/$name" )
done
