#!/usr/bin/env bash
# The GPU checks of the viewer's issue, in one call on the GPU machine (python3 there has torch,
# torchvision, timm, scipy, matplotlib, pillow, safetensors and pytest; no gradio, no network):
#   1. the device tests (tests/test_devices.py: model, erasing, reexplain, payload, evaluate, a
#      short train + resume, CUDA against the CPU) and the CPU suites they stand on;
#   2. the page's explain on CUDA: an upload (decode + explain + payload) and an example click,
#      with the shipped checkpoints at their own input sizes (bench/app_latency.py --device "$DEVICE");
#   3. a tiny teaching-size training run on CUDA (bf16 autocast, channels_last), timed.
# Under 5 minutes; every step bounded by a timeout and reported, a failure does not stop the rest.
#   DEVICE=cpu PYTHON=.venv/bin/python bash bench/gpu_check.sh   (the dry run on the CPU)
#   bash bench/gpu_check.sh            (device tool: run(command="bash bench/gpu_check.sh", timeout_s=360))
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu: the dry run here
OUT=${OUT:-$(mktemp -d)}
status=0
step() {  # step NAME SECONDS COMMAND...: run, time and report one check
    local name=$1 seconds=$2; shift 2
    echo "=== $name ($(date +%T))"
    local started=$SECONDS
    timeout "$seconds" "$@"; local rc=$?
    echo "=== $name: exit $rc in $((SECONDS - started)) s"
    [ $rc -eq 0 ] || status=1
}
$PY -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
step "device tests" 150 $PY -m pytest -q -p no:cacheprovider tests/test_devices.py tests/test_history.py tests/test_maps.py tests/test_payload.py tests/test_model.py
for checkpoint in checkpoints/everyday_acol_efficientnet_lite0.safetensors checkpoints/cub50_acol_efficientnet_lite0.safetensors; do
    step "explain on $DEVICE: $(basename "$checkpoint")" 60 $PY bench/app_latency.py --device "$DEVICE" --repeats 20 --checkpoint "$checkpoint"
done
step "tiny training on $DEVICE" 60 $PY -m acol train --data synthetic --synthetic-images 256 --backbone efficientnet_lite0_s8 \
    --weights none --input-size 128 --head-width 160 --epochs 2 --batch-size 32 --workers 4 --device "$DEVICE" \
    --out "$OUT/tiny_train"
echo "gpu_check: $([ $status -eq 0 ] && echo all passed || echo SOME FAILED)"
exit $status
