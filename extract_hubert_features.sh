#!/usr/bin/env bash
# Extract per-layer features, then analyse them. Every setting is an environment variable; extra arguments go
# to extract_features.py. Works from any working directory (relative paths are taken from where you call it).
#
#   AUDIO_DIR=content/data/LibriSpeech/dev-clean-2 LAYERS=0,6,12 ./extract_hubert_features.sh --overwrite
#
# When AUDIO_DIR does not exist and DOWNLOAD_SPLIT is set (default dev-clean-2 for the default AUDIO_DIR), the
# split is downloaded first with `python -m layerwise.data download` (checksummed, resumable).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"

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
NUM_FILES="${NUM_FILES:-3}"                       # files analysed by visualize_features.py (0 = all)
VIS_DIR="${VIS_DIR:-${SAVE_DIR}/visualizations}"
RUN_VISUALIZE="${RUN_VISUALIZE:-1}"               # 0 to extract only
if [[ -z "${DOWNLOAD_SPLIT+x}" && "${AUDIO_DIR}" == "content/data/LibriSpeech/dev-clean-2" ]]; then
  DOWNLOAD_SPLIT="dev-clean-2"
fi
DOWNLOAD_SPLIT="${DOWNLOAD_SPLIT:-}"



if [[ ! -d "${AUDIO_DIR}" ]]; then
  if [[ -n "${DOWNLOAD_SPLIT}" ]]; then
    # data.py extracts to DEST/LibriSpeech/<split>; AUDIO_DIR is expected to be that folder.
    dest="$(dirname "$(dirname "${AUDIO_DIR}")")"
    echo "[wrapper] ${AUDIO_DIR} not found: downloading ${DOWNLOAD_SPLIT} into ${dest}" >&2
    "${PYTHON}" -m layerwise.data download --split "${DOWNLOAD_SPLIT}" --dest "${dest}"
  else
    echo "[wrapper] AUDIO_DIR=${AUDIO_DIR} does not exist (set DOWNLOAD_SPLIT to fetch a LibriSpeech split)" >&2
    exit 2
  fi
fi

extract_args=(--audio_dir "${AUDIO_DIR}" --save_dir "${SAVE_DIR}" --model_name "${MODEL_NAME}"
  --dataset_split "${DATASET_SPLIT}" --data_sample "${DATA_SAMPLE}" --rep_type "${REP_TYPE}"
  --span "${SPAN}" --layers "${LAYERS}" --device "${DEVICE}" --dtype "${DTYPE}" "$@")
# The folder the extraction writes, as extract_features.py itself derives it (extra arguments such as --save_dir or
# --random_init included).
features_dir="$("${PYTHON}" "${HERE}/extract_features.py" "${extract_args[@]}" --print_output_dir)"

status=0
"${PYTHON}" "${HERE}/extract_features.py" "${extract_args[@]}" || status=$?
if [[ ${status} -ne 0 && ${status} -ne 1 ]]; then
  exit "${status}"   # usage error or interrupted: nothing to analyse
fi
if [[ ${status} -eq 1 ]]; then
  echo "[wrapper] some files failed (see ${features_dir}/failures*.tsv); analysing the rest" >&2
fi

if [[ "${RUN_VISUALIZE}" == "1" && -f "${HERE}/visualize_features.py" ]]; then
  "${PYTHON}" "${HERE}/visualize_features.py" --features_dir "${features_dir}" --output_dir "${VIS_DIR}" \
    --num_files "${NUM_FILES}"
fi
exit "${status}"
