#!/usr/bin/env bash
# How the shipped native-resolution image prior plugins/medrecon_priors/weights/brain-1mm was produced
# (see its card for the losses and the number of steps).
# Data: the MNI152 2009a T1 template (1 mm, skull-stripped) that nilearn ships in its wheel, sliced
# axially, coronally and sagittally, plus synthetic T1-, T2-, PD-, FLAIR-like and random contrasts made
# from the template's grey- and white-matter probability maps (CSF: the rest of the brain), with
# elastic deformations, bias fields, 90-degree turns, flips and smooth-phase (signed) versions.
# Axial slices 80-95 (RAS index) are held out (the shipped sample brain_1mm_holdout.nii.gz) and axial
# slices 120-127 are the validation slab; 4 guard slices either side of each are used by neither,
# and both slabs are cut out before slicing, so no patch in any orientation holds a voxel of them.
# Usage: bash scripts/train_brain_1mm_prior.sh OUTDIR [extra train-prior options, e.g. --resume]
set -euo pipefail
out=${1:?usage: train_brain_1mm_prior.sh OUTDIR [options]}
shift
mkdir -p "$out"
data=$(python -c "from importlib.resources import files; print(files('nilearn.datasets') / 'data')")
template="$data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
notice="MNI ICBM152 2009a nonlinear symmetric T1 template (skull-stripped) and its grey- and white-matter \
probability maps, as shipped in the nilearn wheel (nilearn/datasets/data/mni_icbm152_{t1,gm,wm}_tal_nlin_sym_09a_converted.nii.gz). \
References: Fonov et al., NeuroImage 2011 and OHBM 2009; Collins et al., NeuroImage 1999. Notice distributed by the \
Montreal Neurological Institute with the ICBM 2009 templates: Copyright (C) 1993-2009 Louis Collins, McConnell Brain \
Imaging Centre, Montreal Neurological Institute, McGill University. Permission to use, copy, modify, and distribute \
this software and its documentation for any purpose and without fee is hereby granted, provided that the above \
copyright notice appear in all copies. The authors and McGill University make no representations about the \
suitability of this software for any purpose. It is provided 'as is' without express or implied warranty. \
(nilearn's own dataset description lists the licence as unknown.)"
medrecon train-prior "$template" -o "$out/brain-1mm" --native \
  --tissue-map "$data/mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz" \
  --tissue-map "$data/mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz" \
  --holdout 80:96 --validation 120:128 --holdout-guard 4 \
  --steps "${BRAIN_STEPS:-12000}" --batch-size 16 --lr 2e-4 --checkpoint-every 250 \
  --seed 0 --device cpu --notice "$notice" "$@"
