# Sourced by extract_hubert_features.sh and run_tests.sh: sets PYTHON to an interpreter that imports layerwise and
# torch, creating the project's virtual environment on first use. Not meant to be run on its own.
#
#   PYTHON set by the caller      used as it is (nothing is installed)
#   LAYERWISE_VENV (default .venv beside this repository's README)
#                                 used when its python imports layerwise and torch; otherwise created / completed:
#                                 torch first and pinned (a CPU build; a bare `torch` pulls a multi-GB CUDA build),
#                                 then `pip install -r requirements.txt -e .`
#   SETUP_ONLY=1                  the caller prints the interpreter it found and exits (used by the tests)
_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TORCH_PIN="torch==2.13.0"

_imports_layerwise() {  # found without importing them (importing torch alone takes seconds)
  "$1" -c "import importlib.util as u, sys; sys.exit(not (u.find_spec('layerwise') and u.find_spec('torch')))" \
    >/dev/null 2>&1
}

if [[ -z "${PYTHON:-}" ]]; then
  _venv="${LAYERWISE_VENV:-${_repo}/.venv}"
  if ! _imports_layerwise "${_venv}/bin/python"; then
    echo "[setup] first use: installing into ${_venv} (torch CPU ≈ 200 MB, then the pinned packages; 2–5 min)" >&2
    if [[ ! -x "${_venv}/bin/python" ]]; then
      "${PYTHON_FOR_VENV:-python3}" -m venv "${_venv}" || { echo "[setup] could not create ${_venv}" >&2; exit 2; }
    elif ! "${_venv}/bin/python" -c "import sys; sys.exit(sys.prefix == sys.base_prefix)" 2>/dev/null; then
      echo "[setup] ${_venv}/bin/python is not a virtual environment: nothing installed into it (remove ${_venv}," \
           "or set PYTHON to an interpreter that imports layerwise and torch)" >&2
      exit 2
    fi
    "${_venv}/bin/python" -m pip install --quiet --upgrade pip &&
      "${_venv}/bin/python" -m pip install --quiet "${TORCH_PIN}" &&
      "${_venv}/bin/python" -m pip install --quiet -r "${_repo}/requirements.txt" -e "${_repo}" ||
      { echo "[setup] installing into ${_venv} failed (see pip's message above); re-run to retry" >&2; exit 2; }
    echo "[setup] ready: ${_venv}" >&2
  fi
  PYTHON="${_venv}/bin/python"
fi
if [[ "${SETUP_ONLY:-0}" == "1" ]]; then
  echo "python: ${PYTHON}"
  exit 0
fi
