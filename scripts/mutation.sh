#!/usr/bin/env bash
# Mutation testing of the modules that carry faceproc's guarantees (docs/mutation.md keeps the score and
# every survivor). A habit before you stop, not a CI step; on a shared machine run it niced:
#
#   nice -n 10 scripts/mutation.sh                        # every guarantee module, 2 cores, well under 1 hour
#   nice -n 10 scripts/mutation.sh 'faceproc.runstate.*'  # one module (or a function: faceproc.runstate.x_commit_shard*)
#
# mutmut (PyPI, 3.x) goes into its own venv on top of this Python's packages; the tracked and new files of
# the checkout are copied to $MUTATION_WORK, where mutmut writes mutants/ (the checkout stays clean, and a
# rerun only redoes what changed). Tests are chosen per mutant by mutmut: those that ran the mutated
# function, from the files [tool.mutmut] in pyproject.toml selects (fast tests only).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${MUTATION_WORK:-/tmp/faceproc-mutation}
VENV=${MUTATION_VENV:-$WORK/venv}
JOBS=${MUTATION_JOBS:-2}
PY=${PYTHON:-python3}

# What is mutated: the run state, storage, discovery, the row contract, the CLI, the crop policy (the
# policy's names and its reading from the card, not the crop geometry).
DEFAULT_TARGETS=(
  'faceproc.runstate.*' 'faceproc.storage.*' 'faceproc.discover.*' 'faceproc.schema.*' 'faceproc.cli.*'
  'faceproc.crop.x_parse_policy*' 'faceproc.crop.x_policy_from_card*' 'faceproc.crop.xǁCropPolicyǁ*'
)

if [ ! -x "$VENV/bin/mutmut" ]; then
  "$PY" -m venv --system-site-packages "$VENV"
  "$VENV/bin/pip" install -q mutmut
fi

mkdir -p "$WORK/src"
(cd "$REPO" && git ls-files -co --exclude-standard -z | tar --null -T - -cf -) | tar -xf - -C "$WORK/src"
cd "$WORK/src"
unset PYTHONPATH  # mutmut puts mutants/ first on sys.path (a PYTHONPATH entry made before it exists is dead)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${DEFAULT_TARGETS[@]}")

start=$(date +%s)
"$VENV/bin/mutmut" run --max-children "$JOBS" "${targets[@]}" 2>&1 | tee "$WORK/run.log" | tr '\r' '\n' \
  | grep -av -e '^⠋' -e '^⠙' -e '^⠹' -e '^⠸' -e '^⠼' -e '^⠴' -e '^⠦' -e '^⠧' -e '^⠇' -e '^⠏' | tail -n 40
echo "mutmut: $(( $(date +%s) - start )) s"
# The score per module over the targets, and every survivor with its diff (what docs/mutation.md lists).
"$VENV/bin/python" - "${targets[@]}" <<'PY'
import fnmatch, json, subprocess, sys
from collections import Counter, defaultdict
from pathlib import Path

from mutmut.stats import status_by_exit_code

targets = sys.argv[1:]
by_module, survivors = defaultdict(Counter), []
for meta in sorted(Path("mutants/faceproc").glob("*.py.meta")):
    for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
        if any(fnmatch.fnmatch(name, t) for t in targets):
            status = status_by_exit_code[code]
            by_module[meta.name[: -len(".py.meta")]][status] += 1
            if status not in ("killed", "timeout", "segfault"):
                survivors.append((name, status))
total = Counter()
print(f"{'module':12} {'mutants':>8} {'killed':>8} {'survived':>9} {'no tests':>9} {'score':>7}")
for mod, c in sorted(by_module.items()):
    total += c
    n, k = sum(c.values()), c["killed"] + c["timeout"] + c["segfault"]
    print(f"{mod:12} {n:8d} {k:8d} {c['survived']:9d} {c['no tests']:9d} {100 * k / max(n, 1):6.1f}%")
n, k = sum(total.values()), total["killed"] + total["timeout"] + total["segfault"]
print(f"{'all':12} {n:8d} {k:8d} {total['survived']:9d} {total['no tests']:9d} {100 * k / max(n, 1):6.1f}%")
print(f"\n{len(survivors)} not killed:")
for name, status in survivors:
    diff = subprocess.run([sys.executable, "-m", "mutmut", "show", name], capture_output=True, text=True).stdout
    change = [l for l in diff.splitlines() if l[:1] in "+-" and l[:3] not in ("+++", "---")]
    print(f"- {name} ({status})")
    for line in change:
        print(f"      {line.strip()[:150]}")
PY
