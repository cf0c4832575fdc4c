#!/usr/bin/env bash
# Table 5 of the adversarial-networks paper (shape) on mnist5k: generators trained against the FIXED standard model A,
# then used as attacks (eps 0.3) on A, on its independently seeded copy A', on the pgd_at
# model B and on the advnet model C. Needs the checkpoints of advnet_table1.sh in OUT_DIR.
#
# Usage: bash benchmarks/advnet_table5.sh OUT_DIR [EPOCHS]
# Generator training follows §4.5 (SGD, step 0.01, momentum 0.9) for EPOCHS passes over the
# 4,000 training digits instead of 200k iterations; widths k = 8 (the paper's narrow G1) and
# 16 (the CPU's stand-in for its wide k = 64).
set -euo pipefail
out=${1:?usage: advnet_table5.sh OUT_DIR [EPOCHS]}
epochs=${2:-10}
common=(--model "$out/standard_s0.safetensors" --dataset mnist5k --epochs "$epochs" --optimizer sgd --lr 0.01
        --momentum 0.9 --eps 0.3 --checkpoint-every 63 --resume --no-progress --device cpu)
advframe train-generator "${common[@]}" --generator g1 --width 8 --out "$out/gen_g1_k8.safetensors"
advframe train-generator "${common[@]}" --generator g1 --width 16 --out "$out/gen_g1_k16.safetensors"
advframe train-generator "${common[@]}" --generator g2 --width 8 --out "$out/gen_g2_k8.safetensors"
advframe train-generator "${common[@]}" --generator g3 --width 8 --out "$out/gen_g3_k8.safetensors"
for target in standard_s0 standard_s1 pgd_at_s0 advnet_s0; do
  # one eval per generator: the attack's name is the same, its checkpoint differs
  for g in g1_k8 g1_k16 g2_k8 g3_k8; do
    advframe eval --model "$out/$target.safetensors" --attack generator --param "checkpoint=$out/gen_$g.safetensors" \
      --eps 0.3 --no-progress --no-checks --device cpu --output "$out/table5_${g}_on_$target.json"
  done
done
