#!/usr/bin/env bash
# Train model configs (unfrozen or frozen) on a lent GPU machine that has JAX or PyTorch but no TensorFlow, several
# configs side by side on one GPU (one MobileNetV2 at batch 64 leaves most of a big GPU idle).
#
#   scripts/gpu_train.sh PACKED_CACHE OUT BUDGET_S CONFIG [CONFIG...]
#
# PACKED_CACHE: `faceproc pack-cache runs/cache/utkface.parquet X.parquet` (crops + labels + split).
# BUDGET_S: seconds of fine-tuning epochs per config (`faceproc train --time-budget`).
# Writes OUT/<config>.keras (no optimizer state) and OUT/<config>.tgz (model card, log.csv, history,
# console log). Evaluate the models back here under TensorFlow on the original cache:
#   faceproc evaluate OUT/<config>.keras --data ../shared/data/utkface --cache runs/cache/utkface.parquet
# Wheels in $WHEELS (default .device/whl: keras, namex, optree for the machine's Python) are installed first if present.
# The ImageNet backbone comes from $FACEPROC_BACKBONE_WEIGHTS, else it is taken out of the shipped
# frozen model, whose backbone is the ImageNet MobileNetV2 unchanged (bit-identical, checked).
set -u
cache=$1; out=$2; budget=$3; shift 3
mkdir -p "$out" /tmp/gpu_runs
wheels=${WHEELS:-.device/whl}
if [ -d "$wheels" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$wheels"/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.2}

backend=""
for b in ${BACKENDS:-jax torch}; do
  if KERAS_BACKEND=$b python3 - <<PY
import os, sys, keras
b = keras.backend.backend()
if b == "jax":
    import jax; ok = any(d.platform == "gpu" for d in jax.devices())
else:
    import torch; ok = torch.cuda.is_available()
print("backend", b, "gpu", ok)
if not (ok or os.environ.get("ALLOW_CPU")):
    sys.exit(1)
# A real step before committing the lease to this backend: conv + depthwise + BN, fit, save, load.
import numpy as np
L = keras.layers
i = keras.Input((32, 32, 3))
x = L.BatchNormalization()(L.DepthwiseConv2D(3)(L.Conv2D(8, 3)(i)))
m = keras.Model(i, {"a": L.Dense(1)(L.GlobalAveragePooling2D()(x))})
m.compile("adam", {"a": "mse"})
m.fit(np.zeros((8, 32, 32, 3), "float32"), {"a": np.zeros((8, 1), "float32")}, epochs=1, verbose=0)
m.save("/tmp/gpu_runs/check.keras")
keras.saving.load_model("/tmp/gpu_runs/check.keras").predict(np.zeros((2, 32, 32, 3), "float32"), verbose=0)
PY
  then backend=$b; break; fi
done
[ -n "$backend" ] || { echo "no Keras backend with a GPU"; exit 1; }
export KERAS_BACKEND=$backend

weights=${FACEPROC_BACKBONE_WEIGHTS:-/tmp/gpu_runs/mobilenet_v2_imagenet_no_top.weights.h5}
if [ ! -f "$weights" ]; then
  python3 -c "
from faceproc.agegender.files import load_model
m = load_model('faceproc/weights/frozen.keras')
[l for l in m.layers if hasattr(l, 'layers')][0].save_weights('$weights')" || exit 1
fi

names=()
for cfg in "$@"; do
  name=$(basename "$cfg" .yaml); names+=("$name")
  sed -n 's/^variant: *\([a-z]*\).*/\1/p' "$cfg" > "/tmp/gpu_runs/$name.variant"
  timeout $((budget + ${OVERHEAD_S:-210})) python3 -m faceproc.cli train --config "$cfg" --cache "$cache" \
    -o "/tmp/gpu_runs/$name" --backbone-weights "$weights" --time-budget "$budget" > "/tmp/gpu_runs/$name.log" 2>&1 &
done
wait

for name in "${names[@]}"; do
  (
    run=/tmp/gpu_runs/$name
    model=$run/model.keras; [ -f "$model" ] || model=$run/best.keras
    [ -f "$model" ] && python3 -m faceproc.cli ship "$model" --variant "$(cat "$run.variant")" --to "$run/ship" >> "$run.log" 2>&1 \
      && cp "$run/ship/$(cat "$run.variant").keras" "$out/$name.keras"
    cp "$run.log" "$run/console.log"
    tar czf "$out/$name.tgz" -C "$run" $(cd "$run" && ls model.json ship/*.json log.csv heads_log.csv warm_start_log.csv history.json config.yaml console.log 2>/dev/null)
  ) &
done
wait
python3 - "${names[@]}" <<'PY'
import csv, json, os, sys
for name in sys.argv[1:]:
    print("===", name)
    try:
        log = f"/tmp/gpu_runs/{name}/log.csv"
        rows = list(csv.DictReader(open(log if os.path.exists(log) else log.replace("log.csv", "heads_log.csv"))))
        print(" ".join(f"{int(r['epoch']) + 1}:{float(r['val_age_mae']):.2f}/{float(r['val_gender_accuracy']):.3f}" for r in rows))
        m = json.load(open(f"/tmp/gpu_runs/{name}/model.json"))["metrics"]
        print({k: (round(v["age_mae"], 3), round(v["gender_acc"], 4)) for k, v in m.items()}, "epochs", len(rows))
    except Exception as e:
        print("no summary:", e)
        print("".join(open(f"/tmp/gpu_runs/{name}.log").readlines()[-15:]))
PY
ls -la "$out"
