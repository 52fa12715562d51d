#!/usr/bin/env bash
# Runs every benchmark (benchmarks/*.py), prints one table and writes it, with the
# date, machine and versions, to docs/benchmarks.md. Extra arguments go to
# `python -m benchmarks` (e.g. `--quick`, or benchmark names: `ipmi`).
set -euo pipefail
cd "$(dirname "$0")/.."
python=.venv/bin/python
[[ -x $python ]] || { echo "run.sh: no .venv; run ./tests/run_tests.sh once (it creates it)" >&2; exit 1; }
if ! command -v ipmi_sim >/dev/null; then
  if [[ $(id -u) -eq 0 ]]; then
    echo "run.sh: installing openipmi (ipmi_sim, the IPMI benchmark's reference)" >&2
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends openipmi >/dev/null
  else
    echo "run.sh: ipmi_sim missing: apt-get install -y openipmi" >&2; exit 1
  fi
fi
# only the full, default run is the record: with arguments, leave docs/benchmarks.md alone
doc=()
(($#)) || doc=(--doc docs/benchmarks.md)
# bounded: SIGTERM after 900 s (the benchmarks then stop what they started), SIGKILL 60 s later;
# a full run takes 6-8 minutes on 2 shared cores, more when the image must be built first
exec timeout --foreground -k 60 900 "$python" -m benchmarks "${doc[@]}" "$@"
