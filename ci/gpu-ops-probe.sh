#!/usr/bin/env bash
# Time llama.cpp's test-backend-ops per op against a built wheel's own libraries (issue #25: choosing the
# default op set of the op-level check within its budget). Not a product command; run on a lent GPU
# machine after `scripts/gpu-runner.sh build`. Usage: ci/gpu-ops-probe.sh FLAVOUR [OP...]
set -uo pipefail
cd "$(dirname "$0")/.."
flavour=${1:-cu130-sm90}; shift || true
ops=${*:-MUL_MAT MUL_MAT_ID FLASH_ATTN_EXT GET_ROWS ROPE SOFT_MAX RMS_NORM NORM CPY SET_ROWS ADD MUL SCALE CONT SILU GELU GELU_ERF SWIGLU GEGLU GEGLU_ERF}
W=/tmp/opsprobe; mkdir -p "$W"
wheel=$(ls wheelhouse/"$flavour"/llama_cpp_python-*.whl | head -1)
version=$(basename "$wheel" | cut -d- -f2)
[ -x "$W/venv/bin/python" ] || { python3 -m venv "$W/venv" && "$W/venv/bin/pip" install -q --no-index --find-links "$(dirname "$wheel")" "llama-cpp-python==$version"; }
lib=$(ls -d "$W"/venv/lib/python3*/site-packages/llama_cpp/lib)
src=$(ls -d build/src/llama_cpp_python-*/llama_cpp_python-*/vendor/llama.cpp | head -1)
ls -la "$lib"
t0=$SECONDS
g++ -std=c++17 -O1 -I"$src/ggml/include" "$src/tests/test-backend-ops.cpp" -o "$W/tbo" -L"$lib" -Wl,-rpath,"$lib" -pthread -lggml -lggml-base || exit 1
echo "compiled in $((SECONDS - t0)) s"; readelf -d "$W/tbo" | grep -E "NEEDED|RUNPATH"
for op in $ops; do
  t0=$(date +%s.%N)
  timeout 90 "$W/tbo" test -b CUDA0 -o "$op" > "$W/$op.log" 2>&1; rc=$?
  t1=$(date +%s.%N)
  printf '%-16s rc=%s %6.1f s  %s  ok=%s fail=%s unsupported=%s\n' "$op" "$rc" "$(echo "$t1 - $t0" | bc)" \
    "$(grep -E 'tests passed' "$W/$op.log" | tr -d '\n')" "$(grep -c 'OK' "$W/$op.log")" "$(grep -c 'FAIL' "$W/$op.log")" \
    "$(grep -c 'not supported' "$W/$op.log")"
done
t0=$(date +%s.%N); timeout 90 "$W/tbo" test -b CUDA0 -o MUL_MAT -j 8 > "$W/MUL_MAT-j8.log" 2>&1; echo "MUL_MAT -j 8: rc=$? $(echo "$(date +%s.%N) - $t0" | bc) s $(grep -E 'tests passed' "$W/MUL_MAT-j8.log")"
mkdir -p "${OUT:-/tmp/out}/logs"; tar czf "${OUT:-/tmp/out}/logs/opsprobe.tgz" -C "$W" $(cd "$W" && ls *.log)
