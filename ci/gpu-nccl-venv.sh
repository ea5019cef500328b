#!/bin/sh
# #14 on the GPU machine: the NCCL wheel (pip runtime mode) in a fresh venv where only NVIDIA's PyPI wheels
# provide the CUDA libraries: the system libnccl and every /usr/local/cuda* hidden in a private mount namespace.
set -u
W=$(ls wheelhouse/cu130-sm90*nccl*/llama_cpp_python-*.whl | head -1); echo "wheel: $W"
rm -rf /tmp/wn && python3 -m zipfile -e "$W" /tmp/wn && grep ^Requires-Dist /tmp/wn/*.dist-info/METADATA
readelf -d /tmp/wn/llama_cpp/lib/libggml-cuda.so | grep -E 'NEEDED|RUNPATH'
V=$(basename "$W" | cut -d- -f2)
rm -rf /tmp/nv && env -u PYTHONPATH python3 -m venv /tmp/nv && env -u PYTHONPATH /tmp/nv/bin/pip install -q --no-index --find-links "$(dirname "$W")" "llama-cpp-python==$V" || exit 1
M=$(ls ~/.cache/llama-wheels/models/*.gguf | grep -v -i f16 | head -1); echo "model: $M"
cat > /tmp/m.py <<'PY'
import sys
import llama_cpp
from llama_cpp import Llama
print(llama_cpp.llama_print_system_info().decode(), "gpu_offload:", llama_cpp.llama_supports_gpu_offload())
print(repr(Llama(model_path=sys.argv[1], n_gpu_layers=-1, verbose=False)("Hello", max_tokens=16)["choices"][0]["text"]))
print("\n".join(sorted({l.split()[-1] for l in open("/proc/self/maps") if any(k in l for k in ("libnccl", "libcudart", "libcublas", "libcuda.so"))})))
PY
unshare -m sh -c "mount --bind /dev/null /lib/x86_64-linux-gnu/libnccl.so.2; for d in /usr/local/cuda*; do mount -t tmpfs none \$d; done; ls /usr/local/cuda*/ | head -3; env -u LD_LIBRARY_PATH -u PYTHONPATH /tmp/nv/bin/python /tmp/m.py $M"
