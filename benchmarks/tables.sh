#!/bin/bash
# The README tables that depend on the solver and the shipped model, in two processes:
# the off-catalog benchmark in two halves, the measured PDFs and the reference solves.
# Usage: bash benchmarks/tables.sh [OUTDIR]   (default runs/tables; ~25 min on 2 cores)
cd "$(dirname "$0")/.."
[ -f .venv/bin/activate ] && . .venv/bin/activate
export OMP_NUM_THREADS=1
T=${1:-runs/tables}
mkdir -p $T
(
  python benchmarks/bench_offcatalog.py --count 8 --kinds offcentre vacancies partial_shell relaxed --json $T/offcat_A.json > $T/offcat_A.log 2>&1
  rm -rf $T/meas_JQ_S1; /usr/bin/time -f "wall %e s" deepstruc solve ../shared/data/experimental/JQ_S1.gr -o $T/meas_JQ_S1 --no-progress > $T/meas_jq.log 2>&1
) &
(
  python benchmarks/bench_offcatalog.py --count 8 --kinds rods large sp_metals --json $T/offcat_B.json > $T/offcat_B.log 2>&1
  rm -rf $T/meas_Au144; /usr/bin/time -f "wall %e s" deepstruc solve ../shared/data/experimental/Au144PET_100K-00000.gr -o $T/meas_Au144 --no-progress > $T/meas_au.log 2>&1
  python benchmarks/bench_reference_solve.py --workers 1 > $T/ref.log 2>&1
) &
wait
echo done
