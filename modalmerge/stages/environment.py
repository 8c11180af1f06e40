"""The environment lock of a workflow run: what software produced ``results/<name>/``.

``results/<name>/environment.txt`` (written by the workflow's local rule
``environment``, listed in the report) holds the Python version and platform,
every installed distribution as ``name==version`` (the ``pip freeze`` form,
read with :mod:`importlib.metadata`, no subprocess), torch's version with its
CUDA and cuDNN builds and the GPUs it sees, and the git commit of the working
tree (``-dirty`` when tracked files differ from it). It is a record, not a code
fingerprint input: stages do not rerun when it changes. Committed locks of the
machines behind the documented numbers live in ``docs/locks/``.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from modalmerge.io import atomic_path

__all__ = ["distributions", "environment_lock", "write_environment"]


def distributions() -> list[str]:
    """Every installed distribution as ``name==version``, sorted case-insensitively, once each."""
    found = {}
    for dist in metadata.distributions():
        name, version = _name_version(dist)
        if name:
            found.setdefault(name.lower(), f"{name}=={version}")
    return [found[k] for k in sorted(found)]


def _name_version(dist: metadata.Distribution) -> tuple[str | None, str | None]:
    """``Name`` and ``Version`` of a distribution's metadata, read from its header lines:
    ``dist.metadata`` parses the whole file (long descriptions included) with the email
    parser, ~10 ms per distribution, paid at every Snakemake start when done for ~270 of
    them. Falls back to that parser when the header lacks either field."""
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    fields = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        if sep and key in ("Name", "Version") and key not in fields:
            fields[key] = value.strip()
    if len(fields) < 2:
        return dist.metadata["Name"], dist.version
    return fields["Name"], fields["Version"]


def _torch_lines() -> list[str]:
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - any import failure is recorded, not raised
        return [f"torch: not importable ({type(exc).__name__}: {exc})"]
    lines = [
        f"torch: {torch.__version__}",
        f"torch CUDA build: {torch.version.cuda}",
        f"cuDNN: {torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None}",
        f"CUDA available: {torch.cuda.is_available()}",
    ]
    if torch.cuda.is_available():
        lines += [
            f"GPU {i}: {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())
        ]
    return lines


def _git_commit(where: Path) -> str:
    """The commit checked out at ``where`` (``-dirty`` with changed tracked files), or why not."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return "unknown (not a git checkout)"
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where, capture_output=True, text=True, timeout=10,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown ({type(exc).__name__})"
    return head.stdout.strip() + ("-dirty" if status.stdout.strip() else "")


def environment_lock(where: str | Path = ".") -> str:
    """The lock as text: a header of ``key: value`` lines, then one ``name==version`` per line."""
    header = [
        f"python: {sys.version.split()[0]} ({platform.python_implementation()})",
        f"platform: {platform.platform()}",
        f"machine: {platform.machine()}",
        f"git commit: {_git_commit(Path(where))}",
        *_torch_lines(),
    ]
    return (
        "\n".join(
            [
                "# modalmerge environment lock",
                *header,
                "",
                "# installed distributions",
                *distributions(),
            ]
        )
        + "\n"
    )


def write_environment(path: str | Path, where: str | Path = ".") -> None:
    """Write :func:`environment_lock` of the checkout at ``where`` to ``path``, atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(environment_lock(where))
