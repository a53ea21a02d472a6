#!/usr/bin/env bash
# Round 3b: round 2's "Why BP does not collapse" ablation rows re-run at the house standard, evaluation chips
# 201-205 x seeds 0-2 (n = 15; round 2 had 201-203 x 0-1, n = 6), one after another on ONE Dask worker; each task
# is stored in <out>/paper-sweeps.sqlite as it ends, so re-running this script computes only what is missing.
# Table: benchmarks/README.md "Why BP does not collapse" (summarise with benchmarks/paper/summarise_r3b.py).
set -u
RUNLOG=run_r3b.log
source "$(dirname "$0")/run_lib.sh"
OUT=benchmarks/paper/results/ablation-n15
# the key row: uniform θ on [0, 2π) (the factor that moved BP to the paper's ~69 %)
run ablation15_init=uniform paper-mzi --chips 5 --seeds 3 --set epochs=10 --set methods=bp,sat_insitu \
  --set init=uniform --out $OUT
# the baseline row (Haar θ, the authors' code) on the same chips x seeds, for the pairing
run ablation15_haar paper-mzi --chips 5 --seeds 3 --set epochs=10 --set methods=bp,sat_insitu --out $OUT
# time left after the two rows above (~6 min each at load ~6): the other two one-factor rows at n = 15
run ablation15_init=zero paper-mzi --chips 5 --seeds 3 --set epochs=10 --set methods=bp,sat_insitu \
  --set init=zero --out $OUT
run ablation15_front=linear paper-mzi --chips 5 --seeds 3 --set epochs=10 --set methods=bp,sat_insitu \
  --set front=linear --out $OUT
# with the time left (it finished: 15 of 15 runs, 630 s at load ~4):
# uniform θ with the paper's 40 epochs, seed-major so a cut-off run has whole seeds
run ablation15_init=uniform_epochs=40 paper-mzi --chips 5 --seeds 3 --set epochs=10 --set methods=bp,sat_insitu \
  --set init=uniform --set epochs=40 --out $OUT
