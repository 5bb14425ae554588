#!/usr/bin/env bash
# The GPU check of issue 12, one command for the day a GPU is at hand (at most 8 minutes):
#   1. the test suite with EXPLORER_DEVICE=<device> (what device="auto" means; tests that pin device="cpu" stay
#      there), browser tests and notebooks left out, capped at 5 minutes (--quick: two test files);
#   2. issue 12's merges timed on the device in float32 and float16 (8 x ViT-B/32-shaped random task vectors);
#   3. evaluation throughput (images/s) of a ViT-B/32 image tower with random weights on synthetic images.
# One summary file (markdown) gathers all three.
#
#   bench/gpu_check.sh [--device cuda|cpu] [--quick] [--out gpu_check.md]
#   bench/gpu_check.sh --device cpu --quick      # proves the script on a CPU machine
# Python: $PYTHON, else .venv/bin/python (what `make` sets up), else python3.
set -uo pipefail

DEVICE=cuda
QUICK=""
OUT=gpu_check.md
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --quick) QUICK="--quick"; shift ;;
    --out) OUT="$2"; shift 2 ;;
    *) echo "usage: bench/gpu_check.sh [--device cuda|cpu] [--quick] [--out FILE.md]" >&2; exit 2 ;;
  esac
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
START=$(date +%s)

if [ -n "$QUICK" ]; then  # a CPU proof of the script: two test files, one timed run each, no time caps
  TESTS=(tests/test_taskvec.py tests/test_sweep.py)
  SUITE_LIMIT=0
  TIMING_LIMIT=0
  REPEATS=1
else  # on a GPU: 5 + 2.5 minutes at most
  TESTS=(tests -m "not e2e" --ignore=tests/e2e)
  SUITE_LIMIT=300
  TIMING_LIMIT=150
  REPEATS=3
fi

echo "== test suite on $DEVICE (at most ${SUITE_LIMIT} s, 0: no cap): ${TESTS[*]}"
(cd "$ROOT" && EXPLORER_DEVICE="$DEVICE" GRADIO_ANALYTICS_ENABLED=False PYTHONPATH="$ROOT" \
  timeout "$SUITE_LIMIT" "$PY" -m pytest -q -p no:cacheprovider "${TESTS[@]}" --junitxml="$WORK/tests.xml" \
  > "$WORK/tests.log" 2>&1)
SUITE=$?
tail -n 3 "$WORK/tests.log"
[ "$SUITE" = 124 ] && echo "the suite ran past ${SUITE_LIMIT} s and was stopped (its junit file may be missing)"

echo "== merges and evaluation throughput on $DEVICE"
(cd "$ROOT" && PYTHONPATH="$ROOT" timeout "$TIMING_LIMIT" "$PY" bench/device_check.py --device "$DEVICE" $QUICK \
  --repeats "$REPEATS" \
  --tests "$WORK/tests.xml" --out "$WORK/summary.md")
TIMING=$?
if [ -f "$WORK/summary.md" ]; then
  cp "$WORK/summary.md" "$OUT"
  printf '\nWhole check: %s s (suite exit %s, timings exit %s).\n' "$(( $(date +%s) - START ))" "$SUITE" "$TIMING" \
    >> "$OUT"
  echo "wrote $OUT"
fi
[ "$TIMING" = 0 ] && [ "$SUITE" = 0 ]
