#!/usr/bin/env bash
# How the shipped blur-kernel prior (plugins/medrecon_priors/weights/motion-kernels) was produced:
# 4000 random 15x15 kernels (half motion trajectories, half anisotropic Gaussians; 10% for validation),
# 16x16 frames, a small DiffusionModelUNet without attention. See the prior card for losses and steps.
# Usage: bash scripts/train_kernel_prior.sh OUTDIR [extra train-prior options, e.g. --resume]
set -euo pipefail
out=${1:?usage: train_kernel_prior.sh OUTDIR [options]}
shift
mkdir -p "$out"
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} medrecon train-prior --dataset blur-kernels --count 4000 \
  --dataset-option kernel_size=15 -o "$out/motion-kernels" \
  --steps "${KERNEL_STEPS:-3000}" --batch-size 32 --lr 3e-4 --checkpoint-every 250 --seed 0 "$@"
