#!/usr/bin/env bash
# Developer tooling (not shipped): one GPU run that simulates the structural training cohort and fine-tunes the
# shipped structural U-Net on it, in one command of the lent GPU machine (docs/unet.md, models/README.md).
# On that machine (packages missing from its image travel in .devpkgs/, see docs/dependencies.md):
#   OUT=... bash scripts/gpu_train_structural.sh
# Settings (environment): EXTRA (extra training scans, seed 820), ITERS, VAL_INTERVAL, BATCH (volumes per step),
# SAMPLES (patches per volume), LR, WORKERS, DEADLINE (seconds after the start by which the training is stopped,
# keeping the best validated network so far; leave the copy-back time before the command's own limit).
# Measured on the H200 machine (16 cores), 2026-12-04: unpacking the packages 26 s, simulating 86 scans 108 s,
# caching 80 training scans (N4 first) over 4 min: with 15 minutes of device time in all, simulate no extra scans.
# Second run (EXTRA=0, 46 scans): the training started 5.7 min after the command and ran 2.5 iterations per second
# (docs/unet.md): 15 minutes of device time hold about 3 minutes of training.
set -uo pipefail
T0=$(date +%s)
: "${OUT:?}" "${EXTRA:=40}" "${ITERS:=6000}" "${VAL_INTERVAL:=500}" "${BATCH:=4}" "${SAMPLES:=4}" "${LR:=3e-4}"
: "${N_TRAIN:=40}" "${N_VAL:=6}" "${WORKERS:=16}" "${DEADLINE:=540}" "${WORK:=/tmp/gpu_structural}"
if [ -d .devpkgs ]; then
    mkdir -p /tmp/site && for f in .devpkgs/*.tar.xz; do tar xJf "$f" -C /tmp/site; done
    export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1 ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=2 OMP_NUM_THREADS=2
python3 -c "import torch, monai, SimpleITK, nibabel, ignite; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'monai', monai.__version__)" || exit 3
echo "setup $(( $(date +%s) - T0 )) s"
python3 -m scripts.gpu_structural_cohort --out "$WORK" --workers "$WORKERS" --n_train "$N_TRAIN" --n_val "$N_VAL" --extra "$EXTRA" || exit 4
echo "cohort $(( $(date +%s) - T0 )) s"
S="['configs/common.yaml','configs/unet/train.yaml','configs/unet/structural.yaml']"
timeout --signal=INT "$(( DEADLINE - $(date +%s) + T0 ))" python3 -m monai.bundle run --config_file "$S" --datalist "$WORK/train.json" \
    --output_dir "$WORK/run" --init_weights models/structural_unet.pt --learning_rate "$LR" --lr_schedule cosine \
    --max_iterations "$ITERS" --val_interval "$VAL_INTERVAL" --batch_size "$BATCH" --num_samples "$SAMPLES" \
    --progress false --train#cache#num_workers "$WORKERS" --validate#dataset#num_workers 6 \
    --train#dataloader#num_workers "$WORKERS" 2>&1 | tee "$OUT/train.log"
echo "training stopped with $? after $(( $(date +%s) - T0 )) s"
cp "$WORK/run/checkpoints/best_network.pt" "$OUT/best_network.pt" 2>/dev/null
ls -la "$WORK/run" "$WORK/run/checkpoints" 2>/dev/null | tee "$OUT/files.txt"
for f in "$WORK"/run/*.json "$WORK"/run/*.csv; do [ -f "$f" ] && cp "$f" "$OUT/"; done
echo "done $(( $(date +%s) - T0 )) s"
