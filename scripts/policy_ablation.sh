#!/usr/bin/env bash
# Issue 9: which crop policy / training fill closes the gap between crops and photos?
# Trains the frozen variant (cheap: cached backbone features + heads) under each policy of
# configs/ablation/frozen_policy_*.yaml, then scores every model on the validation group photos through
# `faceproc annotate` (faceproc evaluate-photos), next to the same faces as bare crops.
#   scripts/policy_ablation.sh [CACHE] [DATA]
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${1:-runs/cache/utkface.parquet}
DATA=${2:-../shared/data/utkface}
models=()
for c in configs/ablation/frozen_policy_*.yaml; do
  n=$(basename "$c" .yaml)
  [ -f "runs/$n/model.keras" ] || faceproc train --config "$c" -o "runs/$n" --cache "$CACHE"
  models+=("runs/$n/model.keras")
done
work="$(mkdir -p runs && cd runs && pwd -P)/photo_eval"  # physical path: the photo set is keyed by its folder
faceproc evaluate-photos "${models[@]}" --data "$DATA" --work "$work" --json "$work/frozen_policies.json"
