#!/usr/bin/env bash
# A deliberately broken build (issue #25's negative controls): one CUDA kernel changed on purpose in the
# extracted source of the last build, an incremental rebuild into a wheelhouse of its own (the compiler cache
# recompiles that one file), the source restored, then the smoke of that wheel, which must FAIL.
# Not a product command; run on a lent GPU machine after `scripts/gpu-runner.sh build`.
# Usage: ci/gpu-broken-build.sh VARIANT [MODEL]   VARIANT: rmsnorm-0.1pct | rmsnorm-x1.5
set -uo pipefail
cd "$(dirname "$0")/.."
variant=$1; model=${2:-embedded}
src=$(ls -d build/src/llama_cpp_python-*/llama_cpp_python-*/vendor/llama.cpp | head -1)
file="$src/ggml/src/ggml-cuda/norm.cu"
line='    const float scale = rsqrtf(mean + eps);'
case "$variant" in
  rmsnorm-0.1pct) new='    const float scale = 1.001f*rsqrtf(mean + eps);' ;;
  rmsnorm-x1.5) new='    const float scale = 1.5f*rsqrtf(mean + eps);' ;;
  *) echo "unknown variant $variant" >&2; exit 2 ;;
esac
grep -qxF "$line" "$file" || { echo "the line to change is not in $file" >&2; exit 2; }
cp "$file" /tmp/norm.cu.orig
python3 - "$file" "$line" "$new" <<'PY'
import sys
p, old, new = sys.argv[1:]
s = open(p).read()
assert s.count(old + "\n") == 1
open(p, "w").write(s.replace(old + "\n", new + "\n"))
PY
diff -u /tmp/norm.cu.orig "$file"
wh=/tmp/wh-broken-$variant
LLAMA_WHEELS_WHEELHOUSE=$wh python3 -m nox -s build_cuda -- --offline --archs 90 --cuda-runtime system; rc=$?
cp /tmp/norm.cu.orig "$file"   # restored: the next build recompiles it (a cache hit)
[ $rc -eq 0 ] || { echo "broken build failed to build (rc=$rc)"; exit 1; }
LLAMA_WHEELS_WHEELHOUSE=$wh python3 -m nox -s smoke -- --offline --require-gpu --model "$model"; rc=$?
echo "smoke of the broken build ($variant): rc=$rc (must be != 0)"
cp "$wh"/reports/smoke-*.md "${OUT:-/tmp/out}/logs/smoke-broken-$variant.md" 2>/dev/null
cp "$wh"/reports/smoke-*.json "${OUT:-/tmp/out}/logs/smoke-broken-$variant.json" 2>/dev/null
[ $rc -ne 0 ]
