"""``snakemake --lint`` (run by ``make lint``), less the one lint this workflow answers by design.

Snakemake asks every rule for a conda environment or a container. This workflow has neither on
purpose: every job runs in the project's one environment, installed at the same path on every
node (docs/cluster.md, "Environments"). Any other lint fails, with Snakemake's full output.
(Snakemake 9.15's ``--lint json`` still prints text, so the lint titles are read from that.)
tests/test_workflow.py applies :func:`unaccepted` to its own lint run.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ACCEPTED = {"Specify a conda environment or container for each rule."}


def unaccepted(output: str, returncode: int) -> list[str]:
    """The lint titles in ``snakemake --lint`` output that are not accepted (empty: clean)."""
    titles = re.findall(r"^    \* (.+?):$", output, re.M)
    others = sorted({title for title in titles if title not in ACCEPTED})
    if returncode != 0 and not titles:  # failed without a lint we can read
        return ["snakemake --lint failed (see its output)"]
    return others


def main() -> int:
    snakemake = Path(sys.executable).parent / "snakemake"
    done = subprocess.run(
        [str(snakemake), "--lint", "--cores", "1", *sys.argv[1:]], capture_output=True, text=True
    )
    output = done.stdout + done.stderr
    failed = unaccepted(output, done.returncode)
    if failed:
        sys.stdout.write(output)
        print(f"snakemake --lint: {failed}", file=sys.stderr)
        return 1
    print(f"snakemake --lint: no lints besides '{next(iter(ACCEPTED))}' (by design)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
