#!/usr/bin/env bash
# Fetch, HERE (where pip reaches the package index), the wheels a GPU box without network needs
# for bench/gpu.sh's GPU-decode stages, into .whl/ (git-ignored); gpu.sh installs what it finds
# there into a temporary folder. For the device image's Python (3.12, manylinux x86_64).
#   bash bench/gpu_wheels.sh           # nvImageCodec + the nvJPEG runtime (CUDA 13): ~29 MB
#   bash bench/gpu_wheels.sh --deps    # also this project's dependencies the image lacks
# Not fetched: faiss-gpu-cu13-cuvs (81 MB, plus libcuvs-cu13): too large to travel with the tree;
# without it the FAISS-on-the-GPU rows say "skipped".
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-$(command -v python || command -v python3)}
wheels=(nvidia-nvimgcodec-cu13==0.9.0.20 nvidia-nvjpeg==13.2.3.58)
if [[ ${1:-} == --deps ]]; then
  wheels+=(faiss-cpu sqlalchemy ftfy wcwidth platformdirs)
fi
platforms=()
for n in 17 24 26 27 28 31 34 35 39; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
mkdir -p .whl
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" --platform manylinux2014_x86_64 --platform any -d .whl "${wheels[@]}"
ls -l .whl
echo "wheels: $(du -sh .whl | cut -f1); the tree that travels to the device must stay under 64 MiB"
