#!/usr/bin/env bash
# Extract per-layer features, then analyse exactly the files this extraction completed (and, with COMPARE_DIRS,
# compare folders). Every setting is an environment variable; extra arguments go to extract_features.py. Works from
# any working directory (relative paths are taken from where you call it).
#
#   AUDIO_DIR=content/data/LibriSpeech/dev-clean-2 LAYERS=0,6,12 ./extract_hubert_features.sh --overwrite
#   REP_TYPE=local ./extract_hubert_features.sh                 # conv blocks, in their own ..._local folder
#   COMPARE_DIRS="output/wav2vec2-base/librispeech_dev-clean_sample1" ./extract_hubert_features.sh
#   ALIGNMENT_DIR=content/data/librispeech_alignments ./extract_hubert_features.sh   # + ABX, PNMI, purity per layer
#   ANALYSIS_ARGS="--abx_item my.item --abx_distance euclidean" ./extract_hubert_features.sh
#
# ALIGNMENT_DIR: phone alignments of the audio (TextGrid, CTM, ...; docs/spans.md). With SPAN=frame the analysis
# builds triphone ABX items from them and scores k-means units against the frames' phones (visualize_features.py
# --alignment_dir: ABX error rates, PNMI and phone/cluster purity per layer, docs/analysis.md); with
# SPAN=phone|word the extraction pools its spans from them (extract_features.py --alignment_dir).
# ANALYSIS_ARGS: extra arguments of visualize_features.py (space-separated), e.g. the ABX flags.
#
# When AUDIO_DIR does not exist and DOWNLOAD_SPLIT is set (default dev-clean-2 for the default AUDIO_DIR), the
# split is downloaded first with `python -m layerwise.data download` (checksummed, resumable).
# Exit status (README table): 0 everything produced; 1 some files failed or a requested measure could not be computed
# (the rest is written and the summary names what is missing); 2 nothing produced (usage error, every file failed,
# nothing analysable); 130 interrupted.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
start_s=${SECONDS}

for arg in "$@"; do
  if [[ "${arg}" == "-h" || "${arg}" == "--help" ]]; then   # usage, then extract_features.py's flags; runs nothing
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    echo "Settings (environment variables, defaults): AUDIO_DIR SAVE_DIR MODEL_NAME DATASET_SPLIT DATA_SAMPLE REP_TYPE"
    echo "SPAN LAYERS DEVICE DTYPE NUM_FILES VIS_DIR COMPARE_DIRS RUN_VISUALIZE DOWNLOAD_SPLIT ALIGNMENT_DIR"
    echo "ANALYSIS_ARGS PYTHON (see README.md)."
    echo "PYTHON unset: .venv beside this script, created on first use (LAYERWISE_VENV to put it elsewhere)."
    echo "Extra arguments go to extract_features.py:"
    echo
    help_python="${PYTHON:-${LAYERWISE_VENV:-${HERE}/.venv}/bin/python}"
    if "${help_python}" -c "import layerwise" >/dev/null 2>&1; then
      exec "${help_python}" "${HERE}/extract_features.py" --help
    fi
    echo "(extract_features.py's flags are listed once .venv exists: the first run creates it)"
    exit 0
  fi
done
# A stop (Ctrl-C, `kill PID` of this script, a job system's SIGTERM) goes to the step running now as SIGTERM (a
# step started in the background ignores SIGINT until it sets its own handler), which stops cleanly and says what it
# wrote; the wrapper waits for it, runs no later step and exits 130. A step that got the signal itself too (a
# terminal or a job system signals the whole group) treats the copy as the same stop.
step_pid=""
stopping=""
on_stop() {
  stopping="$1"
  if [[ -n "${step_pid}" ]]; then kill -s TERM "${step_pid}" 2>/dev/null || true; fi
}
trap 'on_stop TERM' TERM
trap 'on_stop INT' INT
stop_if_asked() {
  if [[ -n "${stopping}" ]]; then
    echo "[wrapper] stopped by SIG${stopping}; no later step was run" >&2
    exit 130
  fi
}
source "${HERE}/tools/ensure_venv.sh"   # PYTHON, or .venv created on first use (torch pinned first, then the package)
stop_if_asked

step() {  # run "$@" in the background (so a trap can forward a stop to it), wait for it, return its status
  local rc=0
  stop_if_asked
  "$@" &
  step_pid=$!
  if [[ -n "${stopping}" ]]; then kill -s TERM "${step_pid}" 2>/dev/null || true; fi   # it came just now
  wait "${step_pid}" || rc=$?
  while [[ -n "${stopping}" ]] && kill -0 "${step_pid}" 2>/dev/null; do   # the trap cut the wait short
    rc=0
    wait "${step_pid}" || rc=$?
  done
  step_pid=""
  stop_if_asked
  return "${rc}"
}

AUDIO_DIR="${AUDIO_DIR:-content/data/LibriSpeech/dev-clean-2}"
SAVE_DIR="${SAVE_DIR:-output}"
MODEL_NAME="${MODEL_NAME:-facebook/hubert-base-ls960}"
DATASET_SPLIT="${DATASET_SPLIT:-dev-clean}"
DATA_SAMPLE="${DATA_SAMPLE:-1}"
REP_TYPE="${REP_TYPE:-contextualized}"
SPAN="${SPAN:-frame}"
LAYERS="${LAYERS:-all}"
DEVICE="${DEVICE:-auto}"
DTYPE="${DTYPE:-float32}"
NUM_FILES="${NUM_FILES:-0}"                      # files analysed (0 = every file this extraction completed)
VIS_DIR="${VIS_DIR:-}"                           # default: {features folder}_analysis, beside the features
COMPARE_DIRS="${COMPARE_DIRS:-}"                 # space-separated folders compared with the one just extracted
RUN_VISUALIZE="${RUN_VISUALIZE:-1}"              # 0 to extract only
ALIGNMENT_DIR="${ALIGNMENT_DIR:-}"               # phone alignments: ABX + PNMI (SPAN=frame) or the spans (phone|word)
ANALYSIS_ARGS="${ANALYSIS_ARGS:-}"               # extra arguments of visualize_features.py
if [[ -z "${DOWNLOAD_SPLIT+x}" && "${AUDIO_DIR}" == "content/data/LibriSpeech/dev-clean-2" ]]; then
  DOWNLOAD_SPLIT="dev-clean-2"
fi
DOWNLOAD_SPLIT="${DOWNLOAD_SPLIT:-}"

if [[ ! -d "${AUDIO_DIR}" ]]; then
  if [[ -n "${DOWNLOAD_SPLIT}" ]]; then
    # data.py extracts to DEST/LibriSpeech/<split>; AUDIO_DIR is expected to be that folder.
    dest="$(dirname "$(dirname "${AUDIO_DIR}")")"
    echo "[wrapper] ${AUDIO_DIR} not found: downloading ${DOWNLOAD_SPLIT} into ${dest}" >&2
    echo "[wrapper] (already have the audio? set AUDIO_DIR=/path/to/LibriSpeech/<split>)" >&2
    step "${PYTHON}" -m layerwise.data download --split "${DOWNLOAD_SPLIT}" --dest "${dest}"
  else
    echo "[wrapper] AUDIO_DIR=${AUDIO_DIR} does not exist (set DOWNLOAD_SPLIT to fetch a LibriSpeech split)" >&2
    exit 2
  fi
fi

extract_args=(--audio_dir "${AUDIO_DIR}" --save_dir "${SAVE_DIR}" --model_name "${MODEL_NAME}"
  --dataset_split "${DATASET_SPLIT}" --data_sample "${DATA_SAMPLE}" --rep_type "${REP_TYPE}"
  --span "${SPAN}" --layers "${LAYERS}" --device "${DEVICE}" --dtype "${DTYPE}" "$@")
analysis_args=()
read -r -a analysis_args <<< "${ANALYSIS_ARGS}"
if [[ -n "${ALIGNMENT_DIR}" && "${SPAN}" == "frame" ]]; then
  analysis_args+=(--alignment_dir "${ALIGNMENT_DIR}")
elif [[ -n "${ALIGNMENT_DIR}" ]]; then
  extract_args=(--alignment_dir "${ALIGNMENT_DIR}" "${extract_args[@]}")   # extra arguments still win
fi
# The folder the extraction writes, as extract_features.py itself derives it (extra arguments included).
pod_status=0
features_dir="$("${PYTHON}" "${HERE}/extract_features.py" "${extract_args[@]}" --print_output_dir)" || pod_status=$?
stop_if_asked
[[ ${pod_status} -eq 0 ]] || exit "${pod_status}"
VIS_DIR="${VIS_DIR:-${features_dir}_analysis}"
echo "[wrapper] extracting ${AUDIO_DIR} with ${MODEL_NAME} into ${features_dir} (loading the model first)" >&2

# The files this extraction completed (written now or found complete with the same settings), nothing else.
file_list="$(mktemp "${TMPDIR:-/tmp}/layerwise-files.XXXXXX")"
trap 'rm -f "${file_list}"' EXIT

status=0
step "${PYTHON}" "${HERE}/extract_features.py" "${extract_args[@]}" --write_file_list "${file_list}" || status=$?
if [[ ${status} -ne 0 && ${status} -ne 1 ]]; then
  echo "[wrapper] the extraction produced nothing (exit ${status}); nothing to analyse" >&2
  exit "${status}"   # usage error, every file failed, or interrupted
fi
n_complete=$(wc -l < "${file_list}" | tr -d ' ')
if [[ ${status} -eq 1 ]]; then
  echo "[wrapper] some files failed: see the extraction's summary above" >&2
fi
if [[ "${n_complete}" -eq 0 ]]; then
  echo "[wrapper] the extraction completed no file; nothing to analyse" >&2
  exit "${status}"
fi

# --no_progress (either spelling) among the extra arguments quiets the analysis and the comparison too
progress_args=()
for arg in "$@"; do
  if [[ "${arg}" == "--no_progress" || "${arg}" == "--no-progress" ]]; then progress_args=(--no_progress); fi
done

report=""
if [[ "${RUN_VISUALIZE}" == "1" ]]; then
  analysis_status=0
  step "${PYTHON}" "${HERE}/visualize_features.py" --features_dir "${features_dir}" --file_list "${file_list}" \
    --output_dir "${VIS_DIR}" --num_files "${NUM_FILES}" ${progress_args[@]+"${progress_args[@]}"} \
    ${analysis_args[@]+"${analysis_args[@]}"} || analysis_status=$?
  if [[ ${analysis_status} -ne 0 && ${analysis_status} -ne 1 ]]; then
    exit "${analysis_status}"   # nothing analysed (its message says why)
  fi
  # 1: the report is written and names what could not be computed; the run goes on and ends with that status
  [[ ${analysis_status} -gt ${status} ]] && status=${analysis_status}
  report="${VIS_DIR}/report.html"
fi
if [[ -n "${COMPARE_DIRS}" ]]; then
  read -r -a compare_dirs <<< "${COMPARE_DIRS}"
  step "${PYTHON}" "${HERE}/compare_features.py" --features_dirs "${features_dir}" "${compare_dirs[@]}" \
    --output_dir "${features_dir}_compare" --num_files "${NUM_FILES}" ${progress_args[@]+"${progress_args[@]}"} || exit $?
  echo "[wrapper] comparison: ${features_dir}_compare/report.html" >&2
fi
echo "[wrapper] done in $((SECONDS - start_s)) s: ${n_complete} feature files in ${features_dir}" >&2
[[ -n "${report}" ]] && echo "[wrapper] report: ${report}" >&2
exit "${status}"
