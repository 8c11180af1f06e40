"""Print Snakemake's ``--prioritize`` arguments for a config, for ``make run``.

    python workflow/priority_targets.py config.yaml

The targets are :func:`modalmerge.mean_sources.priority_targets`: the evaluate outputs of
every ``mean_from`` (residual diffusion) experiment, the longest chain of a run
(docs/architecture.md, "Job order"). Prints nothing for a config without one, or whose
settings are invalid (Snakemake then stops on them, naming the key); an unreadable file
stops here, naming it. A script beside the rules rather than a package module: the package
does not import ``yaml`` (Snakemake, which reads the configs, brings it).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import yaml

from modalmerge.mean_sources import priority_targets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    args = parser.parse_args(argv)
    try:
        config = yaml.safe_load(args.config.read_text())
    except (OSError, yaml.YAMLError) as err:
        print(f"{args.config}: cannot read the config: {err}", file=sys.stderr)
        return 1
    try:
        targets = priority_targets(config)
    except (ValueError, KeyError, TypeError, AttributeError):
        return 0
    if targets:
        print(" ".join(["--prioritize", *(shlex.quote(t) for t in targets)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
