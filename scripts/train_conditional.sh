#!/usr/bin/env bash
# How the shipped conditional models plugins/medrecon_priors/weights/{bcdm-mri,diff-unfolding} were
# produced (their cards hold the losses and the number of steps). Same data, held-out slab (axial
# 80-95), validation slab (axial 120-127) and guards as the brain-1mm image prior
# (scripts/train_brain_1mm_prior.sh): the MNI152 2009a T1 template nilearn ships, with synthetic
# contrasts from its grey- and white-matter maps; measurements simulated on the fly.
# BCDM: MRI only (8-coil-like multi-coil Cartesian, 4x-8x). Diff-Unfolding: MRI 4x-8x, sparse-view CT
# (6-36 views), limited-angle CT (60-150 degrees) and known-kernel blur, one model.
# restoration: the reference for operators the shipped Diff-Unfolding never saw (inpainting,
# super-resolution, the test suite's pixel binning): a Diff-Unfolding model trained on those
# (Gaussian conditioning; not shipped: benchmarks/conditional_out_of_range.py --part unseen
# --restoration OUTDIR/diff-unfolding-restoration.json compares the two).
# Usage: bash scripts/train_conditional.sh OUTDIR [bcdm|diff-unfolding|both|restoration] [options, e.g. --resume]
set -euo pipefail
out=${1:?usage: train_conditional.sh OUTDIR [bcdm|diff-unfolding|both] [options]}
which=${2:-both}
shift $(( $# >= 2 ? 2 : 1 ))
mkdir -p "$out"
data=$(python -c "from importlib.resources import files; print(files('nilearn.datasets') / 'data')")
template="$data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
notice="MNI ICBM152 2009a nonlinear symmetric T1 template (skull-stripped) and its grey- and white-matter \
probability maps, as shipped in the nilearn wheel; see the brain-1mm card for the full notice."
# The tasks in the order the shipped models were trained with (the order decides which task each
# training step draws).
train() {
  local name=$1 tasks=mri,ct-sparse,ct-limited,blur
  local conditioning=flat
  [[ $1 == bcdm ]] && name=bcdm-mri && tasks=mri
  [[ $1 == restoration ]] && name=diff-unfolding-restoration && tasks=inpainting,super-resolution \
    && conditioning=gaussian
  medrecon train-conditional "$template" -o "$out/$name" --method "${1/restoration/diff-unfolding}" --tasks "$tasks" \
    --conditioning "$conditioning" \
    --tissue-map "$data/mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz" \
    --tissue-map "$data/mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz" \
    --holdout 80:96 --validation 120:128 --holdout-guard 4 \
    --steps "$2" --batch-size 8 --lr 3e-4 --checkpoint-every 100 \
    --seed 0 --device cpu --notice "$notice" "${@:3}"
}
# The shipped weights: both trained side by side on this 2-core CPU (one torch thread each,
# OMP_NUM_THREADS=1) in 50 minutes; BCDM stopped at 1800 steps, Diff-Unfolding at 1600.
if [[ $which == bcdm || $which == both ]]; then train bcdm "${BCDM_STEPS:-1800}" "$@"; fi
if [[ $which == diff-unfolding || $which == both ]]; then train diff-unfolding "${UNFOLDING_STEPS:-1600}" "$@"; fi
if [[ $which == restoration ]]; then train restoration "${RESTORATION_STEPS:-1600}" "$@"; fi
