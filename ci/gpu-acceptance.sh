#!/usr/bin/env bash
# The GPU acceptance runs of BENCHMARKS.md, as run on a lent GPU machine (no network) through the device
# tool: the checkout plus a carried .prefetch/ (nox -s prefetch -- --python-version 3.12 --platform
# manylinux_2_28_x86_64 ... --model gemma3-270m). Stages in the order given; each logs to $OUT/logs/.
# Not a product command: a self-hosted runner runs scripts/gpu-runner.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT/logs"
export LLAMA_WHEELS_PYTHON=${LLAMA_WHEELS_PYTHON:-$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')}
export PYTHONPATH="$PWD/src:/tmp/llama-wheels-tools" PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
RUN() { local name=$1; shift; echo "=== $name: $*" | tee -a "$OUT/logs/summary.txt"; local t0=$SECONDS
  ( "$@" ) > "$OUT/logs/$name.log" 2>&1; local rc=$?
  echo "=== $name: rc=$rc in $((SECONDS - t0)) s" | tee -a "$OUT/logs/summary.txt"; tail -n 25 "$OUT/logs/$name.log"; return 0; }
NOX() { python3 -m nox "$@"; }
for stage in "$@"; do case "$stage" in
  info) RUN info sh -c 'nvidia-smi -L; nvidia-smi --query-gpu=index,name,compute_cap,driver_version --format=csv; nproc;
        free -g | head -2; python3 -c "import importlib.metadata as m; [print(n, m.version(n)) for n in (\"nvidia-nccl-cu13\", \"nvidia-cuda-runtime\", \"nvidia-cublas\")]";
        ls /usr/include/nccl.h /lib/x86_64-linux-gnu/libnccl.so.2; nvcc --version | tail -2' ;;
  tools) [ -d /tmp/llama-wheels-tools ] || python3 -m pip install -q --no-index --find-links .prefetch/wheels --target /tmp/llama-wheels-tools -r ci/requirements-tools.txt . \
           && rm -rf /tmp/llama-wheels-tools/llama_wheels /tmp/llama-wheels-tools/llama_wheels-*.dist-info
         RUN repack python3 ci/repack_installed.py .prefetch/wheels nvidia-cuda-runtime nvidia-cublas nvidia-nccl-cu13 ;;
  build) RUN build env CUDA_RUNTIME=system ARCHS=90 scripts/gpu-runner.sh build ;;
  build-nccl) RUN build-nccl env LLAMA_WHEELS_GGML_NCCL=true python3 -m nox -s build_cuda -- --offline --archs 90 --variant default --cuda-runtime pip ;;
  smoke-embedded) RUN smoke-embedded NOX -s smoke -- --offline --require-gpu --flavour cu130-sm90 --model embedded --gpus all ;;
  smoke-gemma) RUN smoke-gemma NOX -s smoke -- --offline --require-gpu --flavour cu130-sm90 --model gemma3-270m --gpus all ;;
  numerics) RUN numerics .nox/smoke/bin/python -m llama_wheels numerics --flavour cu130-sm90 --offline --native --model embedded --model gemma3-270m ;;
  bench-1b) RUN bench-1b NOX -s bench -- --offline --require-gpu --flavour cu130-sm90 --model 1b --gpus all --reps 5 --rounds 2 ;;
  bench-gemma) RUN bench-gemma NOX -s bench -- --offline --require-gpu --flavour cu130-sm90 --model "$(ls ~/.cache/llama-wheels/models/*gemma*.gguf | head -1)" --gpus first --reps 5 --rounds 2 ;;
  bench-8b) RUN bench-8b NOX -s bench -- --offline --require-gpu --flavour cu130-sm90 --model 8b --gpus all --reps 3 --rounds 2 ;;
  select) RUN select sh ci/gpu-select.sh ;;
  nccl-venv) RUN nccl-venv sh ci/gpu-nccl-venv.sh ;;
  ops-probe) RUN ops-probe bash ci/gpu-ops-probe.sh cu130-sm90 ;;
  broken-*) RUN "$stage" bash ci/gpu-broken-build.sh "${stage#broken-}" "${MODEL:-embedded}" ;;
  place-model) RUN place-model sh -c 'mkdir -p ~/.cache/llama-wheels/models && for m in $PLACE; do
        cat /tmp/models/$m.p* > ~/.cache/llama-wheels/models/$m.partial && mv ~/.cache/llama-wheels/models/$m.partial ~/.cache/llama-wheels/models/$m; done;
        sha256sum ~/.cache/llama-wheels/models/*.gguf' ;;
  requant) for spec in $REQUANT; do src=${spec%%:*}; rest=${spec#*:}; ftype=${rest%%:*}; dst=${rest#*:}
        RUN "requant-$ftype" build/smoke/venv-cu130-sm90/bin/python src/llama_wheels/_probe.py quantize \
          "{\"src\": \"$HOME/.cache/llama-wheels/models/$src\", \"dst\": \"/tmp/models/$dst\", \"ftype\": \"$ftype\", \"allow_requantize\": true}"; done ;;
  smoke-model) for m in $MODELS; do RUN "smoke-$(basename "$m")" NOX -s smoke -- --offline --require-gpu --flavour cu130-sm90 --model "$m"; done ;;
  numerics-models) RUN numerics-models .nox/smoke/bin/python -m llama_wheels numerics --flavour cu130-sm90 --offline --native $(for m in $MODELS; do printf -- '--model %s ' "$m"; done) ;;
  pack) tar czf "$OUT/${PACK:-results}.tgz" -C . wheelhouse/reports wheelhouse/manifest.json $(find build/smoke build/numerics \( -path '*/ops-*' -a \( -name '*.log' -o -name '*.json' -o -name 'graph-*.txt' \) \) -o -name '*.stdout' -o -name '*.stderr' 2>/dev/null) -C "$OUT" logs 2>/dev/null; rm -rf "$OUT/logs" ;;
  *) echo "unknown stage $stage" >&2; exit 2 ;;
esac; done
