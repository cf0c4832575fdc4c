#!/usr/bin/env bash
# The "Measured" table of docs/worst-case.md: worst-case and single-attack runs of the shipped
# standard and mixed_batch models and of a pgd_at model, on the class-balanced first 1,000
# digits of mnist5k test, linf eps 0.1 / 0.2 / 0.3 and l2 eps 2.
#
# Usage: bash benchmarks/worst_case_table.sh OUT_DIR          (LIMIT=20 for a quick trial run)
# then:  python benchmarks/worst_case_table.py OUT_DIR      (the table's rows, in markdown)
# Each run takes one thread; 75 minutes of CPU in all here (4,490 s summed over the runs), most of it the
# single-attack Square and FAB-T runs on the robust digits. Run it again after an interruption:
# finished documents are kept and the interrupted run resumes (--resume).
set -euo pipefail
out=${1:?usage: worst_case_table.sh OUT_DIR}
mkdir -p "$out"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
common=(--limit "${LIMIT:-1000}" --batch-size 1000 --no-checks --no-progress --resume)
worst=(--worst-case --attack apgd_ce --attack apgd_t --attack fab_t --attack square --attack pgd)
single=(--attack pgd --attack apgd_ce --attack apgd_t --attack fab_t --attack square)
linf=(--norm linf --eps 0.1 --eps 0.2 --eps 0.3)
l2=(--norm l2 --eps 2.0)
# the pgd_at model of docs/defenses-measured.md
[ -f "$out/pgd_at.safetensors" ] || advframe train --model mnist_cnn --dataset mnist5k --defense pgd_at \
    --param steps=10 --param step_size=0.075 --param ramp_epochs=0 --epochs 8 --batch-size 64 --optimizer adam --lr 0.001 \
    --schedule none --holdout 0 --keep last --seed 0 \
    --out "$out/pgd_at.safetensors" --no-progress
for pair in std:mnist_cnn_standard mixed:mnist_cnn_mixed_step_ll "pgdat:$out/pgd_at.safetensors"; do
  tag=${pair%%:*}; model=${pair#*:}
  for norm in linf l2; do
    declare -n grid=$norm
    # a finished document is kept; an interrupted run resumes from its partial state
    [ -f "$out/${tag}_worst_$norm.json" ] ||
      advframe eval --model "$model" "${common[@]}" "${grid[@]}" "${worst[@]}" --output "$out/${tag}_worst_$norm.json"
    [ -f "$out/${tag}_single_$norm.json" ] ||
      advframe eval --model "$model" "${common[@]}" "${grid[@]}" "${single[@]}" --output "$out/${tag}_single_$norm.json"
  done
done
