#!/usr/bin/env bash
# The benchmark's GPU figures, on a machine with a CUDA GPU and attnrec installed
# (`pip install -e .` with a CUDA build of torch):
#
#   bash bench/gpu_check.sh                 # every layer, Ray Serve included, on the GPU
#   NO_RAY=1 bash bench/gpu_check.sh        # no Ray: the model alone, the plain gRPC server
#                                           # and Explain in-process, on the GPU
#   ARGS="--rounds 3" bash bench/gpu_check.sh   # more `attnrec bench` flags
#
# Results in runs/bench-gpu/ (OUT=DIR puts them in DIR/bench-gpu/): bench.json, bench.png,
# the model-alone JSON and the whole log, gpu_check.log. Where the code is a copy without
# .git, set ATTNREC_GIT_COMMIT so that bench.json names the commit measured.
set -euo pipefail
cd "$(dirname "$0")/.."

out="${OUT:-runs}/bench-gpu"
mkdir -p "$out"
exec > >(tee "$out/gpu_check.log") 2>&1

date -u +"%Y-%m-%dT%H:%M:%SZ"
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
python3 -c "import torch; print('torch', torch.__version__, '| cuda available:', torch.cuda.is_available())"
no_ray=()
[ -n "${NO_RAY:-}" ] && no_ray=(--no-ray)
# ARGS is meant to split into words (e.g. "--quick --duration 3")
# shellcheck disable=SC2086
attnrec bench --device "${DEVICE:-cuda}" "${no_ray[@]}" --out "$out" ${ARGS:-}
