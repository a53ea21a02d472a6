# Sourced by run_r2.sh / run_r3.sh: `run LOG ARGS...` runs `labsat experiment ARGS` niced on ONE Dask worker, its
# output in benchmarks/paper/logs/LOG.log, start and end (with the exit status) in benchmarks/paper/logs/$RUNLOG.
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export OMP_NUM_THREADS=1
mkdir -p benchmarks/paper/logs
run() {
  log=$1; shift
  echo "$(date -u +%H:%M:%S) start $log" >> benchmarks/paper/logs/$RUNLOG
  nice -n 5 /usr/bin/time -f "$log wall %e s" .venv/bin/labsat experiment "$@" --scheduler local --workers 1 \
    > benchmarks/paper/logs/$log.log 2>&1
  echo "$(date -u +%H:%M:%S) end $log rc $?" >> benchmarks/paper/logs/$RUNLOG
}
