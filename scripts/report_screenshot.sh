#!/usr/bin/env bash
# docs/img/report.png: what `faceproc annotate` shows a user, for the README's output tour. Runs this checkout's
# code on `faceproc make-sample` (the group photo that ships with insightface, scikit-image's public-domain
# astronaut, a few broken files) with the real models, opens report.html in headless Chromium and keeps a
# small PNG of the whole page (< 120 KB). Needs the detector pack (FACEPROC_INSIGHTFACE_ROOT, default ../shared/models/insightface)
# and chromium. Usage: scripts/report_screenshot.sh [OUT.png]   (~1 min on 2 cores)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$repo/docs/img/report.png}
work=${TMPDIR:-/tmp}/faceproc-screenshot  # a fixed path: the report's header shows it
rm -rf "$work" && mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
export FACEPROC_INSIGHTFACE_ROOT=${FACEPROC_INSIGHTFACE_ROOT:-$repo/../shared/models/insightface}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$browser" ] || { echo "no chromium found: install Debian's chromium package" >&2; exit 1; }

python -m faceproc.cli make-sample "$work/Pictures" >/dev/null
python -m faceproc.cli annotate "$work/Pictures" -o "$work/out" --previews 2 --engine local >/dev/null
"$browser" --headless --no-sandbox --disable-gpu --disable-background-networking --hide-scrollbars \
  --virtual-time-budget=3000 --window-size=1100,5000 --screenshot="$work/shot.png" \
  "file://$work/out/report.html" >/dev/null 2>&1

python - "$work/shot.png" "$dest" <<'PY'
"""The whole page (white below its end cut off), downscaled and quantised until the PNG is under 120 KB."""
import io
import sys

import numpy as np
from PIL import Image

src, dest = sys.argv[1:]
im = Image.open(src).convert("RGB")
rows = np.nonzero((np.asarray(im) < 245).any(axis=(1, 2)))[0]
im = im.crop((0, 0, im.width, min(im.height, int(rows[-1]) + 24)))
for width, colours in ((880, 128), (880, 64), (800, 64), (760, 48), (700, 32)):
    small = im.resize((width, round(im.height * width / im.width)), Image.LANCZOS)
    buf = io.BytesIO()
    small.quantize(colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(buf, "PNG", optimize=True)
    if buf.tell() < 120_000:  # the test allows 150 KB: room for a busier report
        break
open(dest, "wb").write(buf.getvalue())
print(f"{dest}: {small.width}x{small.height}, {colours} colours, {buf.tell() // 1024} KB")
PY
