#!/usr/bin/env bash
# Install what tests/test_slurm.py needs for its one-node SLURM cluster (Debian/Ubuntu, root).
# The test harness installs these itself when missing; running this first keeps apt out of the
# test's timing. The cluster itself is started and stopped by the tests (tests/slurm_harness.py).
set -euo pipefail
if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
    && command -v sbatch >/dev/null && command -v munged >/dev/null; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "slurm-setup: needs root to apt-get install slurmctld slurmd slurm-client munge" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
