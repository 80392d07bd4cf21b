#!/usr/bin/env bash
# Mutation testing of the modules that carry faceproc's guarantees (docs/mutation.md keeps the score and
# every survivor). A habit before you stop, not a CI step; on a shared machine run it niced:
#
#   nice -n 10 scripts/mutation.sh                              # every guarantee module, 2 workers
#   MUTATION_MODULES="cli crop" nice -n 10 scripts/mutation.sh  # some modules
#   MUTATION_MODULES=runstate scripts/mutation.sh 'faceproc.runstate.x_commit_shard*'  # one function
#
# mutmut (PyPI, 3.x) goes into its own venv on top of this Python's packages; the tracked and new files of
# the checkout are copied to $MUTATION_WORK/<module>, where mutmut writes mutants/ (the checkout stays
# clean). Each module has its own test selection (TESTS below); mutmut runs, for each mutant, the selected
# tests that ran the mutated function, and stops at the first failure.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${MUTATION_WORK:-/tmp/faceproc-mutation}
VENV=${MUTATION_VENV:-$WORK/venv}
JOBS=${MUTATION_JOBS:-2}
PY=${PYTHON:-python3}

# What is mutated, module by module: the files (FILES; only they are mutated in the module's copy, so the
# stats run instruments nothing else), the mutants run (TARGETS, mutmut's names: faceproc.<module>.x_<function>,
# faceproc.<module>.xǁ<Class>ǁ<method>) and the tests that may kill them (TESTS; mutmut then runs, for each
# mutant, those of them that ran the mutated function). The crop policy: its names and its reading from the
# card (faceproc/agegender/spec.py), not the crop geometry. A module's tests are its own selection, so each
# module has its own work dir.
declare -A FILES=(
  [runstate]=faceproc/runstate.py [storage]=faceproc/storage.py [discover]=faceproc/discover.py
  [schema]=faceproc/schema.py [cli]=faceproc/cli.py [lock]=faceproc/lock.py [resume]=faceproc/resume.py
  [crop]="faceproc/crop.py faceproc/agegender/spec.py"
)
declare -A TESTS=(
  [runstate]="tests/unit/test_commit_crash.py tests/unit/test_runstate.py tests/unit/test_compaction.py tests/unit/test_resume.py tests/unit/test_changes.py tests/unit/test_trust.py tests/unit/test_pipeline_engine.py tests/unit/test_exit_codes.py tests/s3/test_commit_crash_s3.py"
  [storage]="tests/unit/test_storage.py tests/unit/test_lock.py tests/unit/test_commit_crash.py tests/unit/test_contract_edges.py tests/unit/test_compaction.py tests/unit/test_trust.py tests/s3"
  [discover]="tests/unit/test_discover.py tests/unit/test_pipeline_engine.py tests/unit/test_trust.py tests/unit/test_contract_edges.py tests/s3/test_discover_objects.py tests/s3/test_object_storage.py"
  [schema]="tests/unit/test_schema.py tests/unit/test_storage.py tests/unit/test_failure_paths.py tests/unit/test_contract_edges.py tests/unit/test_trust.py tests/unit/test_report_bounds.py tests/unit/test_compaction.py"
  [cli]="tests/unit/test_exit_codes.py tests/unit/test_cli_surface.py tests/unit/test_trust.py tests/unit/test_pipeline_engine.py"
  [crop]="tests/unit/test_crop_policy.py tests/unit/test_crop_policy_openvino.py tests/unit/test_contract_edges.py"
  [lock]="tests/unit/test_lock.py tests/unit/test_trust.py tests/unit/test_exit_codes.py tests/s3/test_commit_crash_s3.py tests/s3/test_object_storage.py"
  [resume]="tests/unit/test_resume.py tests/unit/test_changes.py tests/unit/test_compaction.py tests/unit/test_commit_crash.py tests/unit/test_trust.py tests/unit/test_pipeline_engine.py tests/unit/test_ownership.py"
)
declare -A TARGETS=(
  [runstate]='faceproc.runstate.*' [storage]='faceproc.storage.*' [discover]='faceproc.discover.*'
  [schema]='faceproc.schema.*' [cli]='faceproc.cli.*' [lock]='faceproc.lock.*' [resume]='faceproc.resume.*'
  [crop]="faceproc.crop.x_parse_policy* faceproc.crop.xǁCropPolicyǁ* faceproc.agegender.spec.x_policy_from_card*"
)
MODULES=${MUTATION_MODULES:-"runstate lock resume storage discover schema cli crop"}

if [ ! -x "$VENV/bin/mutmut" ]; then
  "$PY" -m venv --system-site-packages "$VENV"
  "$VENV/bin/pip" install -q mutmut
fi
unset PYTHONPATH  # mutmut puts mutants/ first on sys.path (a PYTHONPATH entry made before it exists is dead)

for mod in $MODULES; do
  for t in ${TESTS[$mod]} ${FILES[$mod]}; do  # a moved or renamed file would silently shrink the selection
    [ -e "$REPO/$t" ] || { echo "mutation.sh: $mod names $t, which does not exist: update FILES/TESTS" >&2; exit 2; }
  done
done

for mod in $MODULES; do
  dir="$WORK/$mod"
  mkdir -p "$dir"
  (cd "$REPO" && git ls-files -co --exclude-standard -z | tar --null -T - -cf -) | tar -xf - -C "$dir"
  # The copy's [tool.mutmut]: this module's files and tests only.
  "$VENV/bin/python" - "$dir/pyproject.toml" "${FILES[$mod]}" "${TESTS[$mod]}" <<'PY'
import json, re, sys
from pathlib import Path

path, files, tests = Path(sys.argv[1]), sys.argv[2].split(), sys.argv[3].split()
text = path.read_text()
for key, value in (("only_mutate", files), ("pytest_add_cli_args_test_selection", tests)):
    text, n = re.subn(rf"^{key} = \[.*?\]", f"{key} = {json.dumps(value)}", text, count=1, flags=re.M | re.S)
    assert n == 1, f"no {key} in [tool.mutmut]"
path.write_text(text)
PY
  read -r -a targets <<< "${TARGETS[$mod]}"
  [ $# -eq 0 ] || targets=("$@")
  echo "== $mod: ${FILES[$mod]}; tests: ${TESTS[$mod]}"
  start=$(date +%s)
  (cd "$dir" && "$VENV/bin/mutmut" run --max-children "$JOBS" "${targets[@]}" 2>&1 | tee run.log | tr '\r' '\n' \
    | grep -av -e '^⠋' -e '^⠙' -e '^⠹' -e '^⠸' -e '^⠼' -e '^⠴' -e '^⠦' -e '^⠧' -e '^⠇' -e '^⠏' | tail -n 5)
  echo "$mod: $(( $(date +%s) - start )) s"
done

# The score per module, and every mutant not killed with its diff (what docs/mutation.md lists).
"$VENV/bin/python" - "$WORK" $(for mod in $MODULES; do printf '%s=%s ' "$mod" "${FILES[$mod]// /,}"; done) <<'PY'
import json, subprocess, sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

work, modules = Path(sys.argv[1]), sys.argv[2:]
total, survivors = Counter(), []
print(f"{'module':10} {'mutants':>8} {'killed':>8} {'survived':>9} {'no tests':>9} {'timeout':>8} {'score':>7}")
for arg in modules:
    mod, files = arg.split("=")
    metas = [work / mod / "mutants" / f"{f}.meta" for f in files.split(",")]
    codes = {k: v for m in metas if m.exists() for k, v in json.loads(m.read_text())["exit_code_by_key"].items()}
    if not codes:
        continue
    c = Counter()
    for name, code in codes.items():
        if code is None:
            continue  # not a target of this run
        status = status_by_exit_code[code]
        c[status] += 1
        if status not in ("killed", "timeout"):
            survivors.append((mod, name, status))
    total += c
    n, k = sum(c.values()), c["killed"] + c["timeout"]
    print(f"{mod:10} {n:8d} {k:8d} {c['survived']:9d} {c['no tests']:9d} {c['timeout']:8d} {100 * k / max(n, 1):6.1f}%")
n, k = sum(total.values()), total["killed"] + total["timeout"]
print(f"{'all':10} {n:8d} {k:8d} {total['survived']:9d} {total['no tests']:9d} {total['timeout']:8d} {100 * k / max(n, 1):6.1f}%")
print(f"\n{len(survivors)} not killed:")
for mod, name, status in survivors:
    diff = subprocess.run([sys.executable, "-m", "mutmut", "show", name], capture_output=True, text=True,
                          cwd=work / mod).stdout
    print(f"- {name} ({status})")
    for line in diff.splitlines():
        if line[:1] in "+-" and line[:3] not in ("+++", "---"):
            print(f"      {line.strip()[:150]}")
PY
