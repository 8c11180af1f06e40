"""``python -m modalmerge.batch_clean COMMANDS_FILE``: a batch of ``preprocess`` and
``parcellate`` commands that deletes each temporary cleaned BOLD once it has been read.

The workflow's preprocess + parcellate batch jobs (workflow/rules/batches.smk, when
``preprocess.keep_intermediate`` is false) run this. The file is a JSON list of command
lines, as for ``modalmerge batch --commands-file``, plus entries
``["remove-intermediate", PATH]``: delete PATH, which an earlier ``preprocess`` of the same
file must have written (``--out-bold``); any other path is refused, not deleted. Each
command runs through ``modalmerge batch`` in this one process, so the imports are paid
once. It lives outside ``modalmerge/cli.py`` on purpose: the CLI's source is part of every
stage's code fingerprint, and an edit there would rerun every stage of every finished run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from modalmerge import cli

REMOVE = "remove-intermediate"


def run(commands: list[list[str]]) -> int:
    """Run ``commands`` in order (0, or 1 at the first failure, as ``modalmerge`` returns)."""
    written: set[str] = set()
    for i, argv in enumerate(commands, 1):
        if argv[0] == REMOVE:
            for path in argv[1:]:
                if path not in written:
                    raise ValueError(f"entry {i}: {path} was not written by a preprocess above")
                Path(path).unlink()
            continue
        if cli.main(["batch", "--commands", json.dumps([argv])]) != 0:
            return 1
        if argv[0] == "preprocess" and "--out-bold" in argv:
            written.add(argv[argv.index("--out-bold") + 1])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modalmerge.batch_clean", description=__doc__)
    parser.add_argument("commands_file")
    path = parser.parse_args(argv).commands_file
    try:
        commands = json.loads(Path(path).read_text())
        if not isinstance(commands, list) or not all(
            isinstance(c, list) and c and all(isinstance(w, str) for w in c) for c in commands
        ):
            raise ValueError("expected a JSON list of command lines (lists of str)")
        return run(commands)
    except (OSError, ValueError) as exc:
        print(f"modalmerge.batch_clean: error: {path}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
