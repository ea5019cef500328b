#!/usr/bin/env bash
# A CUDA 12.4 build toolkit for the cu124 flavours (README "Drivers older than 580"), from Debian's packages,
# laid out as a toolkit root that `--cuda system:12.4` finds through CUDA_HOME:
#   ci/cuda12-toolkit.sh DEST [PACK.tar.xz]
#   CUDA_HOME=DEST scripts/run nox -s build_cuda -- --cuda system:12.4 --arch-set ampere-dc
#
# NVIDIA's CUDA 12 wheels on PyPI hold ptxas but no nvcc (nvidia-cuda-nvcc-cu12 12.1.105, 12.4.131, 12.8.93 and
# 12.9.86: bin/ptxas, nvvm/, include/crt only), and Debian 12's non-free nvidia-cuda-toolkit is 11.8. Debian 13
# (trixie) non-free has 12.4.131: its nvcc, cicc, ptxas, cudafe++, fatbinary and nvlink are NVIDIA's own binaries
# (glibc >= 2.17), so they run on Debian 12 and Ubuntu 24.04 alike. Nothing is installed into the system: the
# packages are fetched with a private apt configuration and unpacked with dpkg-deb into DEST.
#
# cuBLAS is linked against NVIDIA's link stubs (lib64/stubs, SONAME libcublas.so.12 / libcublasLt.so.12), so the
# toolkit stays small (~190 MB, 35 MB as .tar.xz); the wheel gets the real cuBLAS at run time from
# nvidia-cublas-cu12 (--cuda-runtime pip). Measured on Debian 12 with g++ 12.2 (2026-12-04): nvcc 12.4.131 runs,
# CMake 4.4.4 configures llama.cpp 0.3.36's CUDA backend with it, and ggml-cuda/acc.cu compiles for 80-real;80-virtual.
set -euo pipefail
dest=${1:?usage: ci/cuda12-toolkit.sh DEST [PACK.tar.xz]}
pack=${2:-}
version=12.4.131~12.4.1-2   # the compiler packages
libver=12.4.127~12.4.1-2    # nvidia-cuda-dev, libcudart12
cccl=2.3.2-2                # libcu++-dev, libcub-dev, libthrust-dev (Debian main)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/x"
cat > "$work/sources.list" <<EOF
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main non-free
EOF
cat > "$work/apt.conf" <<EOF
Dir::Etc::SourceList "$work/sources.list";
Dir::Etc::SourceParts "/nonexistent";
Dir::State::Lists "$work/lists";
Dir::Cache "$work/cache";
EOF
export APT_CONFIG=$work/apt.conf
apt-get -q update >/dev/null
(cd "$work" && apt-get -q download "nvidia-cuda-toolkit=$version" "libnvvm4=$version" "libcudart12=$libver" \
  "nvidia-cuda-dev=$libver" "libcu++-dev=$cccl" "libcub-dev=$cccl" "libthrust-dev=$cccl")
x=$work/x
for deb in "$work"/nvidia-cuda-toolkit_*.deb "$work"/libnvvm4_*.deb "$work"/libcudart12_*.deb "$work"/lib*-dev_*.deb; do
  dpkg-deb -x "$deb" "$x"
done
# nvidia-cuda-dev is 934 MB, almost all static libraries: take the headers, the static runtime and the stubs.
dpkg-deb --fsys-tarfile "$work"/nvidia-cuda-dev_*.deb | tar -x -C "$x" --wildcards './usr/include/*' \
  './usr/lib/x86_64-linux-gnu/libcudart_static.a' './usr/lib/x86_64-linux-gnu/libcudadevrt.a' \
  './usr/lib/x86_64-linux-gnu/libculibos.a' './usr/lib/x86_64-linux-gnu/stubs/libcublas*.so' \
  './usr/lib/x86_64-linux-gnu/stubs/libcuda.so'
mkdir -p "$dest/bin/crt" "$dest/nvvm/bin" "$dest/nvvm/libdevice" "$dest/nvvm/lib64" "$dest/lib64/stubs"
cp "$x/usr/lib/nvidia-cuda-toolkit/bin/nvcc" "$dest/bin/"  # /usr/bin/nvcc is Debian's wrapper script
cp "$x"/usr/lib/nvidia-cuda-toolkit/bin/crt/*.stub "$dest/bin/crt/"
for tool in cudafe++ ptxas fatbinary nvlink bin2c cuobjdump nvprune cu++filt; do cp "$x/usr/bin/$tool" "$dest/bin/"; done
cp "$x/usr/lib/nvidia-cuda-toolkit/bin/cicc" "$dest/nvvm/bin/"
cp "$x/usr/lib/nvidia-cuda-toolkit/libdevice/libdevice.10.bc" "$dest/nvvm/libdevice/"
cp -P "$x"/usr/lib/x86_64-linux-gnu/libnvvm.so* "$dest/nvvm/lib64/"
rm -rf "$dest/include" && cp -r "$x/usr/include" "$dest/include"
cp "$x"/usr/lib/x86_64-linux-gnu/lib{cudart_static,cudadevrt,culibos}.a "$dest/lib64/"
cp -P "$x"/usr/lib/x86_64-linux-gnu/libcudart.so* "$dest/lib64/"
cp "$x"/usr/lib/x86_64-linux-gnu/stubs/*.so "$dest/lib64/stubs/"
ln -sf libcudart.so.12 "$dest/lib64/libcudart.so"  # the link nvidia-cuda-dev ships, for FindCUDAToolkit
ln -sf stubs/libcublas.so "$dest/lib64/libcublas.so"
ln -sf stubs/libcublasLt.so "$dest/lib64/libcublasLt.so"
# NVIDIA's own nvcc.profile for a toolkit root (Debian's points into /usr).
cat > "$dest/bin/nvcc.profile" <<'EOF'
TOP              = $(_HERE_)/..
NVVMIR_LIBRARY_DIR = $(TOP)/nvvm/libdevice
LD_LIBRARY_PATH += $(TOP)/lib64:
PATH            += $(TOP)/nvvm/bin:$(_HERE_):
INCLUDES        +=  "-I$(TOP)/include" $(_SPACE_)
LIBRARIES        =+ $(_SPACE_) "-L$(TOP)/lib64/stubs" "-L$(TOP)/lib64"
CUDAFE_FLAGS    +=
PTXAS_FLAGS     +=
EOF
"$dest/bin/nvcc" --version | tail -2
if [ -n "$pack" ]; then
  # libnvvm is for NVRTC-style users; nvcc's cicc does not load it.
  tar -C "$dest" -cf - --exclude=nvvm/lib64 . | xz -T0 -6 > "$pack"
  ls -l "$pack"
fi
