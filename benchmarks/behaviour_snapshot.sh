#!/usr/bin/env bash
# The fixed list of outputs that a refactor must keep: results documents and checkpoints.
# Run it before and after a change with the same interpreter set-up, then compare the two
# folders with benchmarks/compare_snapshots.py (documents ignoring "seconds", checkpoints
# tensor by tensor).
#   bash benchmarks/behaviour_snapshot.sh OUT_DIR
set -euo pipefail
out=${1:?usage: behaviour_snapshot.sh OUT_DIR}
mkdir -p "$out"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
advframe eval --attack iter_ll --no-progress --output "$out/default_iter_ll.json" > /dev/null
advframe eval --attack fgsm --attack pgd --attack mim --attack deepfool --eps 0.1 --eps 0.3 \
    --limit 256 --no-progress --output "$out/linf_256.json" > /dev/null
advframe eval --attack cw_l2 --attack deepfool --norm l2 --eps 1 --eps 2 \
    --param cw_l2.binary_search_steps=3 --param cw_l2.max_iterations=100 \
    --limit 256 --no-progress --output "$out/l2_256.json" > /dev/null
advframe train --defense mixed_batch --epochs 1 --no-progress --out "$out/mixed_batch_1.safetensors" > /dev/null
advframe train --defense pgd_at --epochs 1 --param steps=10 --param step_size=0.01 --param ramp_epochs=0 \
  --optimizer sgd --lr 0.05 --schedule none --holdout 0 --keep last --no-progress --out "$out/pgd_at_1.safetensors" > /dev/null
echo "snapshot written to $out"
