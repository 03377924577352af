#!/usr/bin/env bash
# One script for the GPU box: encoder, decode, end-to-end build, FAISS and dedup figures, and
# the GPU path (nvImageCodec decode, GPU preprocessing agreement, compile modes, FAISS GPU).
#   bash bench/gpu_wheels.sh          # here, first: the wheels the GPU box lacks, into .whl/
#   bash bench/gpu.sh                 # on a CUDA machine: full sizes, < 8 min (--budget 480)
#   bash bench/gpu.sh --device cpu    # here: smaller sizes; --quick for a CI smoke run
# Writes bench/results/<device>.md (or --out FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
device=cpu
py=${PYTHON:-$(command -v python || command -v python3)}
"$py" - <<'PY' >/dev/null 2>&1 && device=cuda
import torch, sys
sys.exit(0 if torch.cuda.is_available() else 1)
PY
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  [[ ${args[$i]} == --device ]] && device=${args[$((i + 1))]}
done
out=bench/results/${device%%:*}.md
[[ " ${args[*]} " == *" --out "* ]] || args+=(--out "$out")
[[ " ${args[*]} " == *" --device "* ]] || args+=(--device "$device")
# Wheels the device image lacks, fetched beforehand by bench/gpu_wheels.sh (no network there).
if [[ $device == cuda* ]] && compgen -G ".whl/*.whl" >/dev/null; then
  site=$(mktemp -d)
  "$py" -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/*.whl
  export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
fi
# faiss-cpu's bundled OpenBLAS picks slow kernels on Sapphire Rapids; needs AVX-512 to apply.
if grep -q avx512f /proc/cpuinfo 2>/dev/null; then
  export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-SkylakeX}
fi
PYTHONPATH=bench:$PWD${PYTHONPATH:+:$PYTHONPATH} exec "$py" bench/gpu_bench.py "${args[@]}"
