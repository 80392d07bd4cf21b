#!/usr/bin/env bash
# Issue 9, last steps: crop-level validation of the two chosen models (train loss, val loss, MAE, accuracy
# with mirror averaging, the path annotate runs), their photo evaluation, and shipping them with both
# figures in their cards.
#   scripts/issue9_finish.sh [UNFROZEN_RUN] [FROZEN_RUN]
set -euo pipefail
cd "$(dirname "$0")/.."
U=${1:-runs/unfrozen_photos3/model.keras}
F=${2:-runs/frozen_policy_s13up15/model.keras}
DATA=${DATA:-../shared/data/utkface}
work="$(mkdir -p runs && cd runs && pwd -P)/photo_eval"
faceproc evaluate "$U" "$F" --data "$DATA" --cache runs/cache/utkface.parquet --flip --json runs/evaluation-issue9-val-flip.json
faceproc evaluate-photos "$U" "$F" --data "$DATA" --work "$work" --json "$work/issue9_models.json"
faceproc ship "$U" --variant unfrozen --evaluation runs/evaluation-issue9-val-flip.json --photo-evaluation "$work/issue9_models.json"
faceproc ship "$F" --variant frozen --evaluation runs/evaluation-issue9-val-flip.json --photo-evaluation "$work/issue9_models.json"
