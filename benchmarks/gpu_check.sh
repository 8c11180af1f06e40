#!/usr/bin/env bash
# The GPU checks of issue 12 in ONE call of the device tool (a lent NVIDIA machine; about
# 6 of its 15 minutes): the CUDA tests (tests/test_gpu.py: bf16 vs fp32 of every diffusion
# model, the Trainer on CUDA with resume after a kill, the train stage under torchrun with
# NCCL), then the throughput benchmarks in fp32 and bf16. Nothing here runs in CI.
#
# The device machine's python3 has torch (CUDA), numpy, scipy, pandas, scikit-learn, h5py,
# scikit-image, matplotlib, einops, pytest; not monai, nibabel, nilearn. Prepare their
# wheels here once (ignored by git; --no-deps: their other needs are there):
#   echo /.whl/ >> .git/info/exclude
#   for p in monai==1.6.1 nibabel==5.4.2 nilearn==0.14.1 importlib_resources==7.1.0; do
#     .venv/bin/python -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux2014_x86_64 -d .whl "$p"; done
# then call the device tool's run with
#   command: bash benchmarks/gpu_check.sh     carry: [".whl"]     timeout_s: 540
# and copy what comes back (env.txt, pytest.txt, bench_*.txt) into the note you write
# (docs/benchmarks.md, "On a GPU: mixed precision against fp32 eager").
set -uo pipefail
out=${OUT:-/tmp/gpu_check}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || { echo "no wheels in .whl (see the header)"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 PATH="$(dirname "$(command -v python3)"):$PATH"
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python3 -c "import torch, monai; print('torch', torch.__version__, 'CUDA', torch.version.cuda,
        'MONAI', monai.__version__, torch.cuda.get_device_name(0),
        'capability', torch.cuda.get_device_capability(0))"
    git rev-parse HEAD 2>/dev/null || true
} 2>&1 | tee "$out/env.txt"
status=0
timeout 300 python3 -m pytest -q -p no:cacheprovider -rs tests/test_gpu.py tests/test_evaluate_samples.py \
    tests/test_training_device.py 2>&1 | tee "$out/pytest.txt" || status=1
timeout 90 python3 benchmarks/bench_diffusion.py speed --device cuda --batch 64 \
    --config configs/gpu.yaml 2>&1 | tee "$out/bench_diffusion.txt" || status=1
timeout 150 python3 benchmarks/bench_train_gpu.py --config workflow --batch-size 16 \
    2>&1 | tee "$out/bench_train_gpu.txt" || status=1
exit $status
