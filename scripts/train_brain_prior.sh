#!/usr/bin/env bash
# How the shipped image prior plugins/medrecon_priors/weights/brain-axial was produced (see its card).
# brain-axial: axial slices of the MNI152 (ICBM 2009a, skull-stripped) T1 template that nilearn ships
# in its wheel; axial slices 80-95 (RAS index) are held out (the shipped sample volume), with 4 guard
# slices either side used by neither training nor validation.
# Usage: bash scripts/train_brain_prior.sh OUTDIR [extra train-prior options, e.g. --resume]
set -euo pipefail
out=${1:?usage: train_brain_prior.sh OUTDIR [options]}
shift
mkdir -p "$out"
template=$(python -c "from importlib.resources import files; print(files('nilearn.datasets') / 'data' / 'mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz')")
notice="MNI ICBM152 2009a nonlinear symmetric T1 template (skull-stripped), as shipped in the nilearn wheel \
(nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz). References: Fonov et al., NeuroImage 2011 \
and OHBM 2009; Collins et al., NeuroImage 1999. Notice distributed by the Montreal Neurological Institute with the \
ICBM 2009 templates: Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological \
Institute, McGill University. Permission to use, copy, modify, and distribute this software and its documentation \
for any purpose and without fee is hereby granted, provided that the above copyright notice appear in all copies. \
The authors and McGill University make no representations about the suitability of this software for any purpose. \
It is provided 'as is' without express or implied warranty. (nilearn's own dataset description lists the licence \
as unknown.)"
medrecon train-prior "$template" -o "$out/brain-axial" --image-size 64 --axis 2 --holdout 80:96 \
  --holdout-guard 4 --steps "${BRAIN_STEPS:-3000}" --batch-size 16 --lr 3e-4 --checkpoint-every 250 \
  --seed 0 --notice "$notice" "$@"
