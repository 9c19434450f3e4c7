#!/usr/bin/env bash
# The benchmark's GPU figures (issue #5) as one short command for the lent GPU machine.
#
# That machine (the `device` tool) has torch with CUDA, numpy, pyarrow, pytest-benchmark,
# matplotlib, safetensors, tqdm and pyyaml, but no network and no Ray: Ray's wheel (79 MB)
# is larger than the 64 MiB a call can carry. So this runs `attnrec bench --no-ray --device
# cuda`: the model alone, the plain gRPC server with its micro-batcher (the batched ranking
# code the Ray replica runs) and Explain in-process, all on the GPU. The project is not
# pip-installed there (pip would want Ray): its folders are linked under one `attnrec`
# namespace, as setuptools' package-dir maps them.
#
#   here, once:    bash bench/gpu_check.sh --fetch    # the wheels it needs there, into .whl/ (git-ignored)
#   there:         the device tool's run, carry [".whl"], timeout_s 480, command
#                  "ATTNREC_GIT_COMMIT=<git rev-parse --short HEAD here> bash bench/gpu_check.sh"
#                  (the copy there has no .git, so the JSON would not know its commit)
#   dry run here:  DEVICE=cpu ARGS=--quick bash bench/gpu_check.sh    # with what is installed here
#
# Results: $OUT/bench-gpu/ there, runs/bench-gpu/ elsewhere: bench.json, bench.png, the
# model-alone JSON and the whole log (gpu_check.log).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--fetch" ]; then
  # the device's Python is 3.12; these pin what protos/generated was made for
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl grpcio==1.85.3 protobuf==7.36.2 captum==0.9.0
  ls -l .whl
  exit 0
fi

out="${OUT:-runs}/bench-gpu"
mkdir -p "$out"
exec > >(tee "$out/gpu_check.log") 2>&1

# the wheels are for the device's Python 3.12; elsewhere, what is installed is used
if compgen -G ".whl/*.whl" > /dev/null && python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/attnrec-site .whl/*.whl
  export PYTHONPATH="/tmp/attnrec-site${PYTHONPATH:+:$PYTHONPATH}"
fi
ns=$(mktemp -d)
mkdir "$ns/attnrec"
for d in model serving explain bench protos; do ln -s "$PWD/$d" "$ns/attnrec/$d"; done
ln -s "$PWD/protos/generated/attnrec/v1" "$ns/attnrec/v1"
export PYTHONPATH="$ns${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

date -u +"%Y-%m-%dT%H:%M:%SZ"
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
python3 -c "import torch, grpc, google.protobuf as p; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), '| grpcio', grpc.__version__, '| protobuf', p.__version__)"
# ARGS is meant to split into words (e.g. "--quick --duration 3")
# shellcheck disable=SC2086
python3 -m attnrec.serving.cli bench --no-ray --device "${DEVICE:-cuda}" --out "$out" ${ARGS:-}
