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
# out-of-range: the reference for operators outside the shipped models' training ranges (MRI 12x,
# CT over 0-45 degrees): a Diff-Unfolding model trained on MRI 10-14x and CT spans of 30-60
# degrees (not shipped: benchmarks/conditional_out_of_range.py --part range --trained
# OUTDIR/diff-unfolding-out-of-range.json compares).
# Usage: bash scripts/train_conditional.sh OUTDIR [bcdm|diff-unfolding|both|restoration|out-of-range]
# (run it again to continue an interrupted training: each stage resumes from its checkpoint)
set -euo pipefail
out=${1:?usage: train_conditional.sh OUTDIR [bcdm|diff-unfolding|both|restoration|out-of-range]}
which=${2:-both}
mkdir -p "$out"
data=$(python -c "from importlib.resources import files; print(files('nilearn.datasets') / 'data')")
template="$data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
notice="MNI ICBM152 2009a nonlinear symmetric T1 template (skull-stripped) and its grey- and white-matter \
probability maps, as shipped in the nilearn wheel; see the brain-1mm card for the full notice."
# train NAME METHOD TASKS CONDITIONING STEPS SEED [options]. The tasks in the order the shipped
# models were trained with (the order decides which task each training step draws).
train() {
  medrecon train-conditional "$template" -o "$out/$1" --method "$2" --tasks "$3" --conditioning "$4" \
    --tissue-map "$data/mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz" \
    --tissue-map "$data/mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz" \
    --holdout 80:96 --validation 120:128 --holdout-guard 4 \
    --steps "$5" --batch-size 8 --lr 3e-4 --checkpoint-every 100 \
    --seed "$6" --device cpu --notice "$notice" "${@:7}"
}
# stage NAME METHOD TASKS CONDITIONING STEPS SEED INIT [options]: a stage whose card already has
# STEPS is done; one with a checkpoint (OUT/NAME.state.pt) resumes from it (with the same options;
# train-conditional refuses a resume whose tasks or ranges differ from the run's); otherwise it
# starts, from the model INIT when one is given ("" for none: from scratch). Re-running the
# script continues where it stopped. A card that was started from another model than INIT (an
# OUTDIR of an earlier release, whose stages were named otherwise) stops the script.
# card_state CARD STEPS INIT_NAME: "done" or "partial"; fails on a card started from another model
card_state() {
  python - "$@" <<'PY'
import json, sys
card, steps, expected = sys.argv[1], int(sys.argv[2]), sys.argv[3]
training = json.load(open(card))["training"]
start = (training.get("initialised_from") or {}).get("model", "")
if start != expected:
    sys.exit(f"{card} was started from {start or 'scratch'!r}, this stage starts from "
             f"{expected or 'scratch'!r}: an OUTDIR of an earlier release? rename its cards (see above)")
print("done" if training["steps"] >= steps else "partial")
PY
}
stage() {
  local card="$out/$1.json" init=$7 state=none
  if [[ -f $card ]]; then
    state=$(card_state "$card" "$5" "$(basename "${init:-}" .json)") || exit 1
  fi
  if [[ $state == done ]]; then
    echo "$1: done ($5 steps)"
  elif [[ -f "$out/$1.state.pt" ]]; then
    train "${@:1:6}" --resume "${@:8}"
  else
    train "${@:1:6}" ${init:+--init "$init"} "${@:8}"
  fi
}
# The shipped weights, trained on this 2-core CPU (one torch thread each, OMP_NUM_THREADS=1, two
# runs side by side). Diff-Unfolding in three stages: 1600 steps from scratch (50 minutes;
# trained as long as the restoration and out-of-range references below), UNFOLDING_SECOND_STEPS
# more with seed 1 and the rate decaying along a cosine from 2e-4 (the previous release's
# diff-unfolding), then UNFOLDING_FINAL_STEPS more with seed 2, cosine from 1.5e-4 (46 minutes).
# (UNFOLDING_FINAL_STEPS named the second stage in the previous release. An OUTDIR trained by
# that release holds the second stage as diff-unfolding.*: rename those files to
# diff-unfolding-stage2.* and the card's "weights" to match, or this script stops at
# the third stage.)
# BCDM in five stages: 1800 steps from scratch (50 minutes; shipped as bcdm-mri four releases
# ago), BCDM_FINETUNE_STEPS more from it with seed 1, BCDM_THIRD_STEPS more with seed 2 and the
# rate decaying along a cosine from 2e-4, BCDM_FOURTH_STEPS more with seed 3, cosine from 1.5e-4
# (70 minutes; validation loss 0.000754 -> 0.000726; the previous release's bcdm-mri), then
# BCDM_FINAL_STEPS more with seed 4, cosine from 1e-4 (84 minutes beside other jobs; validation
# loss 0.000726 -> 0.000689). Each card's training.initialised_from names the stage it started
# from; the shipped fourth and fifth stages started from the shipped (fp16) stage before them, this
# script starts each from the fp32 card of its own previous stage.
# (BCDM_FINAL_STEPS named the fourth stage in the previous release. An OUTDIR trained by that
# release holds the fourth stage as bcdm-mri.*: rename those files to bcdm-mri-stage4.* and the
# card's "weights" to match, or this script stops at the fifth stage.)
case $which in
  bcdm | diff-unfolding | both | restoration | out-of-range) ;;
  *) echo "usage: train_conditional.sh OUTDIR [bcdm|diff-unfolding|both|restoration|out-of-range]" >&2; exit 2 ;;
esac
if [[ $which == bcdm || $which == both ]]; then
  stage bcdm-mri-stage1 bcdm mri flat "${BCDM_STEPS:-1800}" 0 ""
  stage bcdm-mri-stage2 bcdm mri flat "${BCDM_FINETUNE_STEPS:-2600}" 1 "$out/bcdm-mri-stage1.json"
  stage bcdm-mri-stage3 bcdm mri flat "${BCDM_THIRD_STEPS:-3600}" 2 "$out/bcdm-mri-stage2.json" \
    --lr 2e-4 --lr-decay cosine
  stage bcdm-mri-stage4 bcdm mri flat "${BCDM_FOURTH_STEPS:-2400}" 3 "$out/bcdm-mri-stage3.json" \
    --lr 1.5e-4 --lr-decay cosine
  stage bcdm-mri bcdm mri flat "${BCDM_FINAL_STEPS:-1600}" 4 "$out/bcdm-mri-stage4.json" \
    --lr 1e-4 --lr-decay cosine
fi
if [[ $which == diff-unfolding || $which == both ]]; then
  stage diff-unfolding-stage1 diff-unfolding mri,ct-sparse,ct-limited,blur flat "${UNFOLDING_STEPS:-1600}" 0 ""
  stage diff-unfolding-stage2 diff-unfolding mri,ct-sparse,ct-limited,blur flat "${UNFOLDING_SECOND_STEPS:-1800}" 1 \
    "$out/diff-unfolding-stage1.json" --lr 2e-4 --lr-decay cosine
  stage diff-unfolding diff-unfolding mri,ct-sparse,ct-limited,blur flat "${UNFOLDING_FINAL_STEPS:-1800}" 2 \
    "$out/diff-unfolding-stage2.json" --lr 1.5e-4 --lr-decay cosine
fi
if [[ $which == restoration ]]; then
  stage diff-unfolding-restoration diff-unfolding inpainting,super-resolution gaussian \
    "${RESTORATION_STEPS:-1600}" 0 ""
fi
if [[ $which == out-of-range ]]; then
  stage diff-unfolding-out-of-range diff-unfolding mri,ct-limited flat "${OUT_OF_RANGE_STEPS:-1600}" 0 "" \
    --task-option mri.acceleration=10:14 --task-option ct-limited.angle_span=30:60
fi
