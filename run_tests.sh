#!/usr/bin/env bash
# Runs the test suite, setting up .venv on first use (tools/ensure_venv.sh). Extra arguments go to pytest:
#   ./run_tests.sh                  # everything (≈ 10–11 min on 2 almost idle cores, longer on busy ones; README.md)
#   ./run_tests.sh -m "not slow"    # the edit-test loop (≈ 2–2.5 min idle, ≈ 5.5 min busy)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "${HERE}/tools/ensure_venv.sh"
cd "${HERE}"
# The README's test command, verbatim (plus any arguments). pytest exits 5 when it collects no test: a failure here.
status=0
"${PYTHON}" -m pytest -q tests "$@" || status=$?
if [[ "${status}" -eq 5 ]]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "${status}"
